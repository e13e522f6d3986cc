"""The eps-prediction model sampling of public motion modules (AnimateDiff, PIA): ComfyUI's `sqrt_linear` schedule.

AnimateDiff and PIA were trained with diffusers' "linear" betas (0.00085 -> 0.012 in sqrt space), which ComfyUI
calls `sqrt_linear`, not SD1.5's `scaled_linear`. The loader swaps `model_sampling` with an object patch, built the
way ComfyUI's ModelSamplingDiscrete node and AnimateDiff-Evolved's `autoselect` build it
(`comfy.model_base.model_sampling` with `sampling_settings = {"beta_schedule": ...}`): eps prediction, no zero
terminal SNR. AnimateLCM gets "lcm": LCM-distilled sampling (50 original timesteps, LCM boundary conditions) on
SD1.5's betas, the classes of ComfyUI's ModelSamplingDiscrete node with `sampling = lcm`, as AnimateDiff-Evolved's
`lcm` schedule builds it. AtomoVideo's own v-prediction + zero-SNR sampling lives in `zero_snr`.
"""
from __future__ import annotations

import comfy.model_base

from ..atomo_core.weight_format import BETA_SCHEDULES, LCM, SCALED_LINEAR, SQRT_LINEAR

COMFY_BETAS = {SCALED_LINEAR: "linear", SQRT_LINEAR: "sqrt_linear", LCM: "linear"}  # ComfyUI's names


class _ScheduleConfig:
    def __init__(self, beta_schedule: str):
        self.sampling_settings = {"beta_schedule": beta_schedule}


def eps_model_sampling(beta_schedule: str):
    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"beta schedule '{beta_schedule}'; expected one of {list(BETA_SCHEDULES)}")
    config = _ScheduleConfig(COMFY_BETAS[beta_schedule])
    if beta_schedule == LCM:
        from comfy_extras.nodes_model_advanced import LCM as LCMPrediction, ModelSamplingDiscreteDistilled

        class ModelSamplingLCM(ModelSamplingDiscreteDistilled, LCMPrediction):
            pass

        return ModelSamplingLCM(config)
    return comfy.model_base.model_sampling(config, comfy.model_base.ModelType.EPS)


def apply_beta_schedule(model, beta_schedule: str):
    """A clone of `model` sampling as an eps model with `beta_schedule`."""
    m = model.clone()
    m.add_object_patch("model_sampling", eps_model_sampling(beta_schedule))
    return m
