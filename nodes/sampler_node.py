"""AtomoVideo's sampling nodes: zero-terminal-SNR v-prediction needs trailing timesteps and rescaled CFG.

Both are one call into `atomo_host` (`sampling.sample_run`, `zero_snr.apply_zero_snr_vprediction`), which the
long-video node and the trainer's validation use too.
"""
from __future__ import annotations

from comfy_api.latest import io

from ..atomo_core import noise_schedules as ns
from ..atomo_host import file_checks
from ..atomo_host.sampling import SamplingSettings, sample_run
from ..atomo_host.sigmas import DEFAULT_SAMPLER, MAX_STEPS, SAMPLERS, SCHEDULERS, TRAILING, ZERO_SNR_SAMPLERS
from ..atomo_host.zero_snr import apply_zero_snr_vprediction
from .base import AtomoNode


class AtomoVideoSampler(AtomoNode):
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
    def validate_inputs(cls, sampler_name, scheduler) -> bool | str:
        return file_checks.choices(cls, sampler_name=sampler_name, scheduler=scheduler)

    @classmethod
    def execute(cls, model, positive, negative, latent, **settings) -> io.NodeOutput:
        settings = SamplingSettings(**settings)
        return io.NodeOutput({**latent, "samples": sample_run(model, positive, negative, latent, settings)})


class AtomoVideoModelSampling(AtomoNode):
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
        return io.NodeOutput(apply_zero_snr_vprediction(model, cfg_rescale))
