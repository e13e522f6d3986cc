"""Which samplers and schedulers a model may use, and the sigmas of a run, with refusals that say why.

Zero-terminal-SNR v-prediction needs schedules that start at the zero-SNR step; choices measured to fail (or not
verified) are refused for such models. Every node that samples, and the trainer's validation, goes through
`validated_sigmas`.
"""
from __future__ import annotations

import comfy.samplers
import torch

from ..atomo_core import noise_schedules as ns
from ..atomo_core.errors import AtomoVideoError
from .zero_snr import is_v_prediction, is_zero_snr

TRAILING = "trailing"
SCHEDULERS = [TRAILING] + list(comfy.samplers.KSampler.SCHEDULERS)
SAMPLERS = list(comfy.samplers.KSampler.SAMPLERS)
DEFAULT_SAMPLER = "ddim"  # ComfyUI's "ddim" is Euler in sigma space, i.e. deterministic DDIM (eta = 0)
MAX_STEPS = 1000

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
# Schedulers whose sigmas do not fit a zero-SNR model (sigma_max 4518.8): reason shown to the user.
ZERO_SNR_UNSUITABLE_SCHEDULERS = {
    "karras": "spends most steps between sigma 4518 and 100, all of which map to timesteps 990-999 (pure noise)",
    "exponential": "spends most steps between sigma 4518 and 100, all of which map to timesteps 990-999 (pure noise)",
    "linear_quadratic": "keeps almost every step at timestep 999 and then jumps to 0 in one step",
    "kl_optimal": "does not start at the zero-SNR step and returns NaN at 1 step",
    "ddim_uniform": "is 'leading' spacing: it starts at timestep ~961, not at the zero-SNR step 999, so sampling "
                    "from pure noise starts at the wrong noise level (Lin et al. section 3.3)",
}



def check_zero_snr_choice(sampler_name: str, scheduler: str) -> None:
    """Refuse sampler/scheduler choices that are not known to work with a zero-SNR model."""
    if scheduler in ZERO_SNR_UNSUITABLE_SCHEDULERS or scheduler not in ZERO_SNR_SCHEDULERS:
        reason = ZERO_SNR_UNSUITABLE_SCHEDULERS.get(scheduler, "is not verified with zero-terminal-SNR models")
        raise AtomoVideoError("scheduler",
                              f"'{scheduler}' {reason}. With a zero-terminal-SNR model use one of "
                              f"{', '.join(ZERO_SNR_SCHEDULERS)} ('{TRAILING}' is what AtomoVideo was designed for).")
    if sampler_name not in ZERO_SNR_SAMPLERS:
        reason = ZERO_SNR_REFUSED_SAMPLERS.get(
            sampler_name, "is not verified with zero-terminal-SNR v-prediction models (sigma_max 4518.8)")
        raise AtomoVideoError("sampler_name",
                              f"'{sampler_name}' {reason}. Use one of {', '.join(ZERO_SNR_SAMPLERS)}; "
                              f"'{DEFAULT_SAMPLER}' is the default.")


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


def schedule_sigmas(model_sampling, sampler: str, scheduler: str, steps: int, denoise: float) -> torch.Tensor:
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


def validated_sigmas(model, sampler_name: str, scheduler: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """The sampling sigmas, after refusing choices that cannot work."""
    if sampler_name not in SAMPLERS:
        raise AtomoVideoError("sampler_name", f"unknown sampler '{sampler_name}'; use one of {SAMPLERS}.")
    if scheduler not in SCHEDULERS:
        raise AtomoVideoError("scheduler", f"unknown scheduler '{scheduler}'; use one of {SCHEDULERS}.")
    if not 1 <= steps <= MAX_STEPS:
        raise AtomoVideoError("steps", f"must be between 1 and {MAX_STEPS}, got {steps}.")
    if is_zero_snr(model):
        if not is_v_prediction(model):
            raise AtomoVideoError("model", "the model has a zero-terminal-SNR schedule but predicts eps, "
                                  "which is undefined at the last step (alpha_bar_T = 0). Use v-prediction "
                                  "(AtomoVideo Model Sampling) or a schedule without zero SNR for eps weights.")
        check_zero_snr_choice(sampler_name, scheduler)
    model_sampling = model.get_model_object("model_sampling")
    try:
        return schedule_sigmas(model_sampling, sampler_name, scheduler, steps, denoise)
    except ValueError as e:  # trailing spacing cannot have more steps than training timesteps
        raise AtomoVideoError("steps", f"{e}: steps / denoise must not exceed the "
                              f"{len(model_sampling.sigmas)} training timesteps with '{TRAILING}'; lower steps "
                              f"or raise denoise.") from e
