"""GroupNorm whose statistics span all frames of each video, on the frames-as-batch layout `(b f) c h w`.

AnimateDiff v1 and PIA were trained with the UNet's GroupNorms run on 5-D video tensors `b c f h w`. Rearranging
to that layout and back costs two full copies per norm; this computes the same thing in place of the layout
change: the mean and variance of every (frame, group) over its contiguous channels and pixels, combined over the
frames of the video (equal counts: the mean of the means, and the mean of the variances plus the variance of the
means), then one fused scale-and-shift per (video, channel). Statistics are taken in float32 at least.
"""
from __future__ import annotations

import torch


def group_norm_across_frames(x: torch.Tensor, frames: int, num_groups: int, weight: torch.Tensor | None,
                             bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """`group_norm(x.view(b, f, c, h, w).transpose(1, 2), ...)` returned in the layout of `x` (4-D, b*f frames)."""
    bf, channels = x.shape[:2]
    if x.ndim < 3 or bf % frames or channels % num_groups:
        raise ValueError(f"cannot normalise a {tuple(x.shape)} batch across {frames} frames in {num_groups} groups")
    b = bf // frames
    per_group = x.reshape(b, frames, num_groups, -1)
    stats = per_group if per_group.dtype in (torch.float32, torch.float64) else per_group.float()
    var, mean = torch.var_mean(stats, dim=3, correction=0)          # (b, f, G) per frame
    video_mean = mean.mean(dim=1)                                   # (b, G)
    video_var = var.mean(dim=1) + (mean - video_mean.unsqueeze(1)).square().mean(dim=1)
    rstd = torch.rsqrt(video_var + eps)
    cg = channels // num_groups
    scale = rstd.repeat_interleave(cg, dim=1)                       # (b, C)
    shift = -video_mean.repeat_interleave(cg, dim=1) * scale
    if weight is not None:
        scale = scale * weight.to(scale.dtype)
        shift = shift * weight.to(shift.dtype)
    if bias is not None:
        shift = shift + bias.to(shift.dtype)
    flat = x.reshape(b, frames, channels, -1)
    scale, shift = (t.to(x.dtype).view(b, 1, channels, 1) for t in (scale, shift))
    return torch.addcmul(shift, flat, scale).view(x.shape)
