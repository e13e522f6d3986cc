"""One way to sample a video latent, used by every node that samples and by the trainer's validation.

Sampling runs through ComfyUI's own machinery (`comfy.sample.sample_custom`, i.e. CFGGuider and the k-diffusion
samplers), so the progress bar, latent previews, interruption and `noise_mask` behave as in KSampler.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..atomo_core import noise_schedules as ns
from .sampling_checks import FiniteWatch, check_conditioning_fits, check_prediction
from .sigmas import DEFAULT_SAMPLER, TRAILING, validated_sigmas
from .zero_snr import set_cfg_rescale

SEED_RANGE = 2**64  # ComfyUI seeds are 64-bit


@dataclass(frozen=True)
class SamplingSettings:
    """What a run samples with. `cfg_rescale` None keeps the rescale the model already carries."""
    seed: int = 0
    steps: int = 25
    cfg: float = 7.5
    sampler_name: str = DEFAULT_SAMPLER
    scheduler: str = TRAILING
    denoise: float = 1.0
    cfg_rescale: float | None = ns.DEFAULT_CFG_RESCALE

    def with_seed_offset(self, offset: int) -> "SamplingSettings":
        return replace(self, seed=(int(self.seed) + offset) % SEED_RANGE)


# callback(step, x0, x, total_steps), as comfy.sample.sample_custom calls it
StepCallback = Callable[[int, torch.Tensor, torch.Tensor, int], None]


class PreparedSampling:
    """A model ready to sample with `settings`: choices refused and sigmas computed once, CFG rescale applied
    once, so a loop of runs (long videos, validation) pays for them once."""

    def __init__(self, model, settings: SamplingSettings):
        self.settings = settings
        self.sigmas = validated_sigmas(model, settings.sampler_name, settings.scheduler, int(settings.steps),
                                       settings.denoise)
        self.model = model if settings.cfg_rescale is None else set_cfg_rescale(model, settings.cfg_rescale)
        self.sampler = comfy.samplers.sampler_object(settings.sampler_name)

    @property
    def steps(self) -> int:
        """Model evaluations per run (0 for denoise 0)."""
        return max(self.sigmas.shape[-1] - 1, 0)

    def sample(self, positive, negative, latent: dict, seed: int | None = None,
               callback: StepCallback | None = None) -> torch.Tensor:
        """The sampled latent of `latent` (a LATENT dict: samples, optional noise_mask and batch_index).

        One randn over [F, 4, h, w] seeded by `seed` (default: the settings'): frames get independent noise, as
        in KSampler. Without `callback`, the host's progress bar and latent previews."""
        latent_image = comfy.sample.fix_empty_latent_channels(self.model, latent["samples"])
        check_conditioning_fits({"positive": positive, "negative": negative}, latent_image)
        check_prediction(self.model)
        if self.steps == 0:  # denoise 0: nothing to do
            return latent_image
        seed = self.settings.seed if seed is None else seed
        noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
        disable_pbar = True
        if callback is None:
            callback = latent_preview.prepare_callback(self.model, self.steps)
            disable_pbar = not comfy.utils.PROGRESS_BAR_ENABLED
        watch = FiniteWatch(callback)
        out = comfy.sample.sample_custom(
            self.model, noise, self.settings.cfg, self.sampler, self.sigmas, positive, negative, latent_image,
            noise_mask=latent.get("noise_mask"), callback=watch, disable_pbar=disable_pbar, seed=seed)
        return watch.check(out, self.steps)


def sample_run(model, positive, negative, latent: dict, settings: SamplingSettings,
               callback: StepCallback | None = None) -> torch.Tensor:
    """Sample `latent` once with `settings` (see `PreparedSampling.sample`)."""
    return PreparedSampling(model, settings).sample(positive, negative, latent, callback=callback)
