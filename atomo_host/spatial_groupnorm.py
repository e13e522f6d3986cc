"""Spatial GroupNorms that take statistics across all frames of a video (AnimateDiff v1 and PIA training).

AnimateDiff v1 and PIA ran the base UNet's 2-D ResNet GroupNorms (and the final `conv_norm_out`) on 5-D video
tensors `b c f h w`, so their statistics span every frame; v2, v3 and AnimateLCM normalise each frame alone. The
motion modules' own GroupNorm is per frame in every format and is not touched here.

Nothing global is patched. For each targeted GroupNorm *instance* the model clone gets an object patch of its
`forward` attribute (`diffusion_model.<path>.forward`): a callable that normalises across the frames of each
video without changing the layout (`atomo_core.frame_groupnorm`, no `b c f h w` copies). When the host casts the
norm's weights (low-VRAM, manual cast, weight functions) it instead reshapes `(b f) c h w -> b c f h w` and runs
the module's own class `forward`, so those casts apply as usual. Module objects and state-dict keys stay the same;
unpatching restores the original method.

The frame count comes from a `contextvars.ContextVar` set around each UNet call by a DIFFUSION_MODEL wrapper
(frames = batch // number of cond/uncond chunks, as for the temporal layers). A context variable is private to
the thread (and task) running the call, so concurrent runs cannot see each other's frame count; outside a wrapped
call the norms behave exactly as the original ones.
"""
from __future__ import annotations

from contextvars import ContextVar

import torch

import comfy.patcher_extension
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

from ..atomo_core.frame_groupnorm import group_norm_across_frames
from ..atomo_core.weight_format import ACROSS_FRAMES_ALL, GROUPNORM_MODES, PER_FRAME
from .conditioning import frames_in_batch
from .inflation import NORM_ACROSS_FRAMES

KEY = "atomovideo_spatial_groupnorm"
# ACROSS_FRAMES_ALL: ResBlock and final norms across frames, plus the spatial transformers' input norms and the
# temporal layers' (motion modules') own GroupNorms, as AnimateDiff-Evolved's global GroupNorm patch does: it
# replaces `torch.nn.GroupNorm.forward` during the UNet call, which every GroupNorm of the UNet and of its motion
# modules goes through. The original AnimateDiff v1/PIA code normalises transformer and motion-module inputs per
# frame (ACROSS_FRAMES).

_FRAMES: ContextVar = ContextVar("atomovideo_spatial_groupnorm_frames", default=None)


class AcrossFramesForward:
    """Installed as the `forward` of one GroupNorm instance: statistics over all frames of each video."""

    def __init__(self, norm: torch.nn.GroupNorm):
        self.norm = norm

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        original = type(norm).forward
        frames = _FRAMES.get()
        if frames is None or frames <= 1 or x.ndim != 4 or x.shape[0] % frames:
            return original(norm, x)
        if not _host_casts(norm, x):
            return group_norm_across_frames(x, frames, norm.num_groups, norm.weight, norm.bias, norm.eps)
        b = x.shape[0] // frames
        h = x.reshape(b, frames, *x.shape[1:]).transpose(1, 2)  # (b f) c h w -> b c f h w
        h = original(norm, h)
        return h.transpose(1, 2).reshape(x.shape)


def _host_casts(norm, x) -> bool:
    """Whether the host's own forward would cast or patch the norm's weights for this input."""
    if getattr(norm, "comfy_cast_weights", False) or getattr(norm, "weight_function", None) \
            or getattr(norm, "bias_function", None):
        return True
    w = norm.weight
    return w is not None and (w.device != x.device or w.dtype != x.dtype)


def _frames_wrapper(executor, x, *args, **kwargs):
    options = args[4] if len(args) > 4 else kwargs.get("transformer_options", {})
    token = _FRAMES.set(frames_in_batch(x, options or {}))
    try:
        return executor(x, *args, **kwargs)
    finally:
        _FRAMES.reset(token)


def target_norms(unet, include_transformers: bool = False) -> dict:
    """Path in the UNet -> GroupNorm: ResBlock `in_layers.0`/`out_layers.0`, the final `out.0`, and (optionally)
    each SpatialTransformer's `norm`."""
    found = {}
    for path, module in unet.named_modules():
        if isinstance(module, ResBlock):
            for sub in ("in_layers.0", "out_layers.0"):
                found[f"{path}.{sub}"] = module.get_submodule(sub)
        elif include_transformers and isinstance(module, SpatialTransformer):
            found[f"{path}.norm"] = module.norm
    found["out.0"] = unet.out[0]
    return {p: m for p, m in found.items() if isinstance(m, torch.nn.GroupNorm)}


def apply_spatial_groupnorm(model, mode: str):
    """A clone of `model` whose spatial GroupNorms follow `mode` (PER_FRAME returns `model` unchanged)."""
    if mode not in GROUPNORM_MODES:
        raise ValueError(f"spatial GroupNorm mode '{mode}'; expected one of {list(GROUPNORM_MODES)}")
    if mode == PER_FRAME:
        return model
    m = model.clone()
    unet = model.get_model_object("diffusion_model")
    for path, norm in target_norms(unet, include_transformers=mode == ACROSS_FRAMES_ALL).items():
        m.add_object_patch(f"diffusion_model.{path}.forward", AcrossFramesForward(norm))
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, _frames_wrapper)
    if mode == ACROSS_FRAMES_ALL:
        m.model_options.setdefault("transformer_options", {})[NORM_ACROSS_FRAMES] = True
    return m
