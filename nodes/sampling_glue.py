"""Zero-terminal-SNR v-prediction for a ComfyUI MODEL, through a clone's object patch and a post-CFG function.

Shared by the loader (AtomoVideo weights whose metadata say v + zero SNR), the MODEL -> MODEL node and the
sampler node, so the three can never disagree about the schedule or apply CFG rescale twice.
"""
from __future__ import annotations

import math

import comfy.model_sampling
import comfy.samplers
import torch

from ..atomo_core import noise_schedules as ns

# Marks the pack's post-CFG function so a second application replaces it instead of stacking it.
_RESCALE_TAG = "atomovideo_cfg_rescale"

# Schedulers whose sigmas do not fit a zero-SNR model (sigma_max 4518.8): reason shown to the user.
ZERO_SNR_UNSUITABLE_SCHEDULERS = {
    "karras": "spends most steps between sigma 4518 and 100, all of which map to timesteps 990-999 (pure noise)",
    "exponential": "spends most steps between sigma 4518 and 100, all of which map to timesteps 990-999 (pure noise)",
    "linear_quadratic": "keeps almost every step at timestep 999 and then jumps to 0 in one step",
    "kl_optimal": "does not start at the zero-SNR step and returns NaN at 1 step",
    "ddim_uniform": "is 'leading' spacing: it starts at timestep ~961, not at the zero-SNR step 999, so sampling "
                    "from pure noise starts at the wrong noise level (Lin et al. section 3.3)",
}


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
    m = set_cfg_rescale(model_patcher, cfg_rescale)
    m.add_object_patch("model_sampling", zero_snr_vprediction_sampling(m.model.model_config))
    return m


def trailing_sigmas(model_sampling, steps: int) -> torch.Tensor:
    """diffusers' "trailing" timesteps as sigmas of the model's own schedule, ending in 0."""
    n = len(model_sampling.sigmas)
    t = ns.trailing_timesteps(steps, n)
    sig = model_sampling.sigmas[t.to(model_sampling.sigmas.device)].float().cpu()
    return torch.cat([sig, sig.new_zeros(1)])


def scheduler_sigmas(model_sampling, scheduler: str, steps: int) -> torch.Tensor:
    if scheduler == "trailing":
        return trailing_sigmas(model_sampling, steps)
    return comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps).float().cpu()


def sampling_sigmas(model_sampling, sampler: str, scheduler: str, steps: int, denoise: float) -> torch.Tensor:
    """Sigmas exactly as ComfyUI's KSampler derives them (denoise, discarded penultimate sigma), plus trailing."""

    def full(n):
        if sampler in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
            s = scheduler_sigmas(model_sampling, scheduler, n + 1)
            return torch.cat([s[:-2], s[-1:]])
        return scheduler_sigmas(model_sampling, scheduler, n)

    if denoise is None or denoise > 0.9999:
        return full(steps)
    if denoise <= 0.0:
        return torch.FloatTensor([])
    return full(int(steps / denoise))[-(steps + 1):]
