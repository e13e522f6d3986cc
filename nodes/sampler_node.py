"""AtomoVideo's sampling nodes: zero-terminal-SNR v-prediction needs trailing timesteps and rescaled CFG.

Sampling runs through ComfyUI's own machinery (`comfy.sample.sample_custom`, i.e. CFGGuider and the k-diffusion
samplers), so the progress bar, latent previews, interruption and `noise_mask` behave as in KSampler.
"""
from __future__ import annotations

import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..atomo_core import noise_schedules as ns
from ..atomo_core.errors import input_error
from . import sampling_glue as glue

TRAILING = "trailing"
SCHEDULERS = [TRAILING] + list(comfy.samplers.KSampler.SCHEDULERS)
SAMPLERS = list(comfy.samplers.KSampler.SAMPLERS)
DEFAULT_SAMPLER = "ddim"  # ComfyUI's "ddim" is Euler in sigma space, i.e. deterministic DDIM (eta = 0)

# Samplers checked against the exact denoiser at zero SNR (tests/test_sampler_host.py). Others are refused at
# zero SNR rather than risking a broken video; with eps models every ComfyUI sampler is allowed.
ZERO_SNR_SAMPLERS = ["ddim", "euler", "euler_ancestral", "ddpm", "lms", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde",
                     "uni_pc"]
# Measured failures (exact denoiser, cfg 7.5, rescale 0.7), named so the refusal says why; others are unverified.
ZERO_SNR_REFUSED_SAMPLERS = {
    "heun": "corrects its first step from sigma 4518.8 with a slope taken at the next sigma, which multiplies "
            "any difference between guided predictions by ~1000 (values of 900+ instead of ~15 at 2 steps)",
    "dpm_2": "takes its midpoint slope across the first step from sigma 4518.8, which distorts guided "
             "predictions (values up to 22 instead of ~14 at 2 steps)",
    "lcm": "is for consistency-distilled models, not AtomoVideo",
}
ZERO_SNR_SCHEDULERS = [TRAILING, "simple", "sgm_uniform", "normal", "beta"]
MAX_STEPS = 1000


def check_zero_snr_choice(node: str, sampler_name: str, scheduler: str) -> None:
    """Refuse sampler/scheduler choices that are not known to work with a zero-SNR model."""
    if scheduler in glue.ZERO_SNR_UNSUITABLE_SCHEDULERS or scheduler not in ZERO_SNR_SCHEDULERS:
        reason = glue.ZERO_SNR_UNSUITABLE_SCHEDULERS.get(scheduler, "is not verified with zero-terminal-SNR models")
        raise input_error(node, "scheduler",
                          f"'{scheduler}' {reason}. With a zero-terminal-SNR model use one of "
                          f"{', '.join(ZERO_SNR_SCHEDULERS)} ('{TRAILING}' is what AtomoVideo was designed for).")
    if sampler_name not in ZERO_SNR_SAMPLERS:
        reason = ZERO_SNR_REFUSED_SAMPLERS.get(
            sampler_name, "is not verified with zero-terminal-SNR v-prediction models (sigma_max 4518.8)")
        raise input_error(node, "sampler_name",
                          f"'{sampler_name}' {reason}. Use one of {', '.join(ZERO_SNR_SAMPLERS)}; "
                          f"'{DEFAULT_SAMPLER}' is the default.")


def validated_sigmas(node: str, model, sampler_name: str, scheduler: str, steps: int, denoise: float):
    """The sampling sigmas, after refusing choices that cannot work (shared by every node that samples)."""
    if sampler_name not in SAMPLERS:
        raise input_error(node, "sampler_name", f"unknown sampler '{sampler_name}'; use one of {SAMPLERS}.")
    if scheduler not in SCHEDULERS:
        raise input_error(node, "scheduler", f"unknown scheduler '{scheduler}'; use one of {SCHEDULERS}.")
    if not 1 <= steps <= MAX_STEPS:
        raise input_error(node, "steps", f"must be between 1 and {MAX_STEPS}, got {steps}.")
    if glue.is_zero_snr(model):
        if not glue.is_v_prediction(model):
            raise input_error(node, "model", "the model has a zero-terminal-SNR schedule but predicts eps, "
                              "which is undefined at the last step (alpha_bar_T = 0). Use v-prediction "
                              "(AtomoVideo Model Sampling) or a schedule without zero SNR for eps weights.")
        check_zero_snr_choice(node, sampler_name, scheduler)
    model_sampling = model.get_model_object("model_sampling")
    try:
        return glue.sampling_sigmas(model_sampling, sampler_name, scheduler, steps, denoise)
    except ValueError as e:  # trailing spacing cannot have more steps than training timesteps
        raise input_error(node, "steps", f"{e}: steps / denoise must not exceed the "
                          f"{len(model_sampling.sigmas)} training timesteps with '{TRAILING}'; lower steps "
                          f"or raise denoise.") from e


class AtomoVideoSampler(io.ComfyNode):
    """KSampler with the defaults zero-SNR v-prediction needs: trailing timesteps, DDIM, CFG rescale."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AtomoVideoSampler",
            display_name="AtomoVideo Sampler",
            category="AtomoVideo",
            description="Samples all frames of a video latent (frames are the batch) from pure noise with "
                        "trailing timesteps and rescaled classifier-free guidance.",
            inputs=[
                io.Model.Input("model", tooltip="The video model, e.g. from AtomoVideo Loader. Its sampling "
                               "(v-prediction, zero terminal SNR) comes from the weight file or AtomoVideo Model "
                               "Sampling."),
                io.Conditioning.Input("positive", tooltip="Conditioning the video should follow (text, image)."),
                io.Conditioning.Input("negative", tooltip="Conditioning to steer away from; the unconditional "
                                      "branch of classifier-free guidance."),
                io.Latent.Input("latent", tooltip="The video latent, frames as the batch [F, 4, h, w]. Its "
                                "noise_mask, if any, keeps masked-out regions (e.g. given frames) fixed."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the initial noise; every frame gets its own independent noise."),
                io.Int.Input("steps", default=25, min=1, max=MAX_STEPS,
                             tooltip="Number of sampling steps. 25 is a good start with ddim + trailing."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale. 1 disables guidance (and skips the "
                               "negative branch)."),
                io.Float.Input("cfg_rescale", default=ns.DEFAULT_CFG_RESCALE, min=0.0, max=1.0, step=0.01,
                               tooltip="Lin et al. CFG rescale phi: pulls the guided v prediction's per-frame "
                               "std back to the conditional one's, against over-exposure at high cfg. 0 = off. "
                               "Replaces the rescale set by the loader or AtomoVideo Model Sampling."),
                io.Combo.Input("sampler_name", options=SAMPLERS, default=DEFAULT_SAMPLER,
                               tooltip="ComfyUI sampler. 'ddim' (deterministic DDIM) is the default; with "
                               "zero-SNR models only samplers verified at zero SNR are accepted: "
                               + ", ".join(ZERO_SNR_SAMPLERS) + "."),
                io.Combo.Input("scheduler", options=SCHEDULERS, default=TRAILING,
                               tooltip="Timestep spacing. 'trailing' (diffusers' trailing spacing, starting at "
                               "the zero-SNR step) is the default; ComfyUI's 'simple' is nearly the same. "
                               "karras, exponential, ddim_uniform, linear_quadratic and kl_optimal are refused "
                               "for zero-SNR models."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the schedule to run. 1 samples from pure noise (AtomoVideo "
                               "uses no noise prior); lower values start from the input latent."),
            ],
            outputs=[io.Latent.Output(display_name="LATENT")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent, seed, steps, cfg, cfg_rescale, sampler_name, scheduler,
                denoise) -> io.NodeOutput:
        sigmas = validated_sigmas("AtomoVideoSampler", model, sampler_name, scheduler, steps, denoise)
        model = glue.set_cfg_rescale(model, cfg_rescale)
        out = latent.copy()
        latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        if sigmas.shape[-1] <= 1:  # denoise 0: nothing to do
            out["samples"] = latent_image
            return io.NodeOutput(out)
        # One randn over [F, 4, h, w] seeded by `seed`: frames get independent noise, as in KSampler.
        noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
        callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
        samples = comfy.sample.sample_custom(
            model, noise, cfg, comfy.samplers.sampler_object(sampler_name), sigmas, positive, negative,
            latent_image, noise_mask=latent.get("noise_mask"), callback=callback,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        out["samples"] = samples
        return io.NodeOutput(out)


class AtomoVideoModelSampling(io.ComfyNode):
    """For KSampler / SamplerCustomAdvanced users: the loader does this itself for v + zero-SNR weights."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AtomoVideoModelSampling",
            display_name="AtomoVideo Model Sampling",
            category="AtomoVideo",
            description="Sets v-prediction with a zero-terminal-SNR schedule and CFG rescale on a model, so "
                        "KSampler or SamplerCustomAdvanced sample AtomoVideo correctly (use scheduler 'simple'). "
                        "Not for eps weights (PIA, AnimateDiff).",
            inputs=[
                io.Model.Input("model", tooltip="Model whose weights were trained with v-prediction and a zero "
                               "terminal SNR schedule (AtomoVideo). Never use it on eps weights."),
                io.Float.Input("cfg_rescale", default=ns.DEFAULT_CFG_RESCALE, min=0.0, max=1.0, step=0.01,
                               tooltip="Lin et al. CFG rescale phi (0.7 recommended, 0 = off), applied as a "
                               "post-CFG function so it composes with other guidance patches."),
            ],
            outputs=[io.Model.Output(display_name="MODEL")],
        )

    @classmethod
    def execute(cls, model, cfg_rescale) -> io.NodeOutput:
        node = "AtomoVideoModelSampling"
        if not 0.0 <= cfg_rescale <= 1.0:
            raise input_error(node, "cfg_rescale", f"must be in [0, 1], got {cfg_rescale}.")
        if not isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.ModelSamplingDiscrete):
            raise input_error(node, "model", "this model does not use a discrete DDPM schedule (e.g. a flow or "
                              "EDM model); zero-terminal-SNR v-prediction only applies to SD1.5-family models.")
        return io.NodeOutput(glue.apply_zero_snr_vprediction(model, cfg_rescale))
