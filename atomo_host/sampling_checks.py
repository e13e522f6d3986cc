"""Checks across nodes when sampling starts, and of what sampling produced.

Each node checks its own inputs; only at sampling do the pieces meet: the image condition made for F frames of
one size, the latent to sample, the model's sampling and the prediction type its temporal weights were trained
with. ComfyUI itself would repeat a shorter condition over the frames (frames 4-5 silently get frames 0-1's
condition) or fail in torch without naming an input. NaN produced inside sampling (an overflowing model) is
caught per step, through the progress callback, and reported with the step it appeared at.
"""
from __future__ import annotations

import torch

import comfy.model_sampling

from ..atomo_core.errors import AtomoVideoError
from .conditioning import IMAGE_COND, MASK_COND

FOLLOW = ("make the latent with the same AtomoVideo Image Conditioning / Frame Continuation node that made the "
          "conditioning (its 'latent' output), or set that node's frames, width and height to the latent's")


def _entries(conditioning):
    """The option dicts of a CONDITIONING list ([emb, opts]) or of a guider's converted conds (dicts)."""
    for entry in conditioning or ():
        if isinstance(entry, dict):
            yield entry
        elif isinstance(entry, (list, tuple)) and len(entry) > 1 and isinstance(entry[1], dict):
            yield entry[1]


def _cond_tensor(opts: dict, key: str):
    value = (opts.get("model_conds") or {}).get(key)
    return getattr(value, "cond", None)


def check_conditioning_fits(conditioning: dict, latent: torch.Tensor) -> None:
    """`conditioning`: input name -> CONDITIONING; every image condition must have the latent's frames and size."""
    frames, size = latent.shape[0], tuple(latent.shape[-2:])
    for field, cond in conditioning.items():
        for opts in _entries(cond):
            for key, what in ((IMAGE_COND, "image condition"), (MASK_COND, "frame mask")):
                t = _cond_tensor(opts, key)
                if t is None:
                    continue
                if t.shape[0] != frames:
                    raise AtomoVideoError(
                        "latent", f"the latent has {frames} frames but the {what} in '{field}' was made for "
                        f"{t.shape[0]} frames (ComfyUI would repeat it, giving later frames the condition of "
                        f"earlier ones); {FOLLOW}")
                if tuple(t.shape[-2:]) != size:
                    raise AtomoVideoError(
                        "latent", f"the latent is {size[1] * 8}x{size[0] * 8} pixels ({size[1]}x{size[0]} latent) "
                        f"but the {what} in '{field}' was made for {t.shape[-1] * 8}x{t.shape[-2] * 8}; {FOLLOW}")


def eps_weights(model) -> str | None:
    """The file name of the model's temporal weights when they were trained for eps (AnimateDiff, PIA)."""
    from .inflation import inflation_of  # inflation's sampling wrapper calls this module

    inflation = inflation_of(model)
    return inflation.file_name if inflation is not None and inflation.metadata.prediction == "eps" else None


def refuse_vprediction(name: str, how: str) -> None:
    raise AtomoVideoError(
        "model", f"the temporal weights '{name}' predict noise (eps, as AnimateDiff and PIA do); {how} gives "
        "v-prediction with zero terminal SNR, which turns their output into noise. Remove it: AtomoVideo Loader "
        "with noise_schedule 'from weights' already sets the schedule these weights were trained with")


def check_prediction(model) -> None:
    """Refuse v-prediction sampling of temporal weights trained for eps."""
    name = eps_weights(model)
    if name and isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.V_PREDICTION):
        refuse_vprediction(name, "the model's sampling (AtomoVideo Model Sampling or ModelSamplingDiscrete)")


class FiniteWatch:
    """A sampler callback that notes the first step whose prediction or latent holds NaN/Inf (one `isfinite` per
    step, small beside a UNet call), then calls `callback`."""

    def __init__(self, callback=None):
        self.callback, self.first_bad = callback, None

    def __call__(self, step, x0, x, total_steps):
        # x0 is the model's prediction at this step, x the state it starts from
        if self.first_bad is None and not all(bool(torch.isfinite(t).all()) for t in (x0, x) if t is not None):
            self.first_bad = (step, total_steps)
        if self.callback is not None:
            self.callback(step, x0, x, total_steps)

    def check(self, result: torch.Tensor, steps: int) -> torch.Tensor:
        if bool(torch.isfinite(result).all()):
            return result
        step, total = self.first_bad if self.first_bad is not None else (steps - 1, steps)
        raise AtomoVideoError(
            "model", f"sampling produced NaN/Inf values, first at step {step + 1} of {total}; the output would be "
            "a black or noise video. The model's output overflowed: lower cfg, check the weights and LoRA "
            "strengths (a damaged or mismatched file), or run the model in fp32 (start ComfyUI with "
            "--force-fp32) if it overflows in fp16")
