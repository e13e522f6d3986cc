"""Zero-terminal-SNR v-prediction for a ComfyUI MODEL, through a clone's object patch and a post-CFG function.

Shared by the loader (AtomoVideo weights whose metadata say v + zero SNR), the MODEL -> MODEL node, every node
that samples and the trainer's validation, so they can never disagree about the schedule or apply CFG rescale
twice.
"""
from __future__ import annotations

import math

import comfy.model_sampling

from ..atomo_core import noise_schedules as ns
from ..atomo_core.errors import AtomoVideoError
from . import sampling_checks

# Marks the pack's post-CFG function so a second application replaces it instead of stacking it.
_RESCALE_TAG = "atomovideo_cfg_rescale"

def is_zero_snr(model_patcher) -> bool:
    ms = model_patcher.get_model_object("model_sampling")
    return bool(getattr(ms, "zsnr", False))


def is_v_prediction(model_patcher) -> bool:
    return isinstance(model_patcher.get_model_object("model_sampling"), comfy.model_sampling.V_PREDICTION)


def zero_snr_vprediction_sampling(model_config):
    """The same object ComfyUI's ModelSamplingDiscrete node builds for sampling=v_prediction, zsnr=True."""

    class ModelSamplingAtomoVideo(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
        pass

    return ModelSamplingAtomoVideo(model_config, zsnr=True)


def make_cfg_rescale(phi: float):
    """Post-CFG function: Lin et al. rescale on the v prediction, however ComfyUI combined cond and uncond.

    Post-CFG functions are a list, so this composes with other patches where `sampler_cfg_function`
    (RescaleCFG's slot) would overwrite or be overwritten.
    """

    def atomovideo_cfg_rescale(args):
        guided = args["denoised"]
        cond_x0 = args.get("cond_denoised")
        if cond_x0 is None or math.isclose(args["cond_scale"], 1.0):
            return guided  # no guidance, nothing to rescale
        x = args["input"]
        sigma = args["sigma"].to(x.dtype)
        sigma = sigma.view(sigma.shape[:1] + (1,) * (x.ndim - 1)) if sigma.numel() > 1 else sigma.view(())
        # k-diffusion x = x0 + sigma eps is x_t / a_t with alpha_bar_t = 1 / (1 + sigma^2).
        alpha_bar = 1.0 / (1.0 + sigma * sigma)
        x_t = x * alpha_bar.sqrt()
        v_guided = ns.v_from_x0(x_t, guided, alpha_bar)
        v_cond = ns.v_from_x0(x_t, cond_x0, alpha_bar)
        v = ns.rescale_guided(v_guided, v_cond, phi)
        return ns.x0_from_v(x_t, v, alpha_bar)

    setattr(atomovideo_cfg_rescale, _RESCALE_TAG, phi)
    return atomovideo_cfg_rescale


def set_cfg_rescale(model_patcher, cfg_rescale: float):
    """Clone with the pack's CFG rescale set to `cfg_rescale` (0 removes it); other post-CFG functions stay."""
    m = model_patcher.clone()
    fns = [f for f in m.model_options.get("sampler_post_cfg_function", []) if not hasattr(f, _RESCALE_TAG)]
    m.model_options["sampler_post_cfg_function"] = fns
    if cfg_rescale > 0.0:
        m.set_model_sampler_post_cfg_function(make_cfg_rescale(float(cfg_rescale)))
    return m


def apply_zero_snr_vprediction(model_patcher, cfg_rescale: float = ns.DEFAULT_CFG_RESCALE):
    """Clone `model_patcher` with v-prediction, zero-terminal-SNR model sampling and CFG rescale `cfg_rescale`.

    The schedule keeps the model config's betas (SD1.5: scaled linear 0.00085-0.012) and rescales them the way
    ComfyUI's ModelSamplingDiscrete(zsnr) does, which clamps alpha_bar_T to 4.9e-8 (see noise_schedules).
    """
    if not 0.0 <= cfg_rescale <= 1.0:
        raise AtomoVideoError("cfg_rescale", f"must be in [0, 1], got {cfg_rescale}.")
    if not isinstance(model_patcher.get_model_object("model_sampling"), comfy.model_sampling.ModelSamplingDiscrete):
        raise AtomoVideoError("model", "this model does not use a discrete DDPM schedule (e.g. a flow or EDM "
                              "model); zero-terminal-SNR v-prediction only applies to SD1.5-family models.")
    name = sampling_checks.eps_weights(model_patcher)
    if name:
        sampling_checks.refuse_vprediction(name, "AtomoVideo Model Sampling")
    m = set_cfg_rescale(model_patcher, cfg_rescale)
    m.add_object_patch("model_sampling", zero_snr_vprediction_sampling(m.model.model_config))
    return m
