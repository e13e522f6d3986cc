"""Temporal layers that turn an image UNet into a video UNet (AtomoVideo section "temporal layers").

Frames travel through the UNet as the batch dimension: a tensor of shape `(B*F, C, H, W)` holds B videos of F
frames, frames contiguous per video. Each layer mixes information across the F frames at every spatial
position and adds it to its input. Output projections start at zero, so a fresh inflation reproduces the image
model frame by frame.

`TemporalAttention` has the parameter names of AnimateDiff's `VanillaTemporalModule` (`temporal_transformer.*`
without that prefix) so AnimateDiff and PIA files map onto it by renaming keys only.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

AttentionFn = Callable[..., torch.Tensor]

# Sequences per attention call: xformers fails with "invalid configuration argument" above 65535 (peer issue
# ADE #6), so the (B*H*W) temporal sequences are processed in chunks of at most this many.
MAX_ATTENTION_BATCH = 32768


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, **_) -> torch.Tensor:
    """Torch SDPA with the calling convention of ComfyUI's `optimized_attention`: (N, L, heads*d) in and out."""
    n, length, inner = q.shape
    d = inner // heads
    q, k, v = (t.view(n, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(n, length, inner)


def sinusoidal_encoding(length: int, channels: int) -> torch.Tensor:
    """AnimateDiff's positional encoding over frames: sin on even, cos on odd channels, base 10000."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
    pe = torch.zeros(1, length, channels)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


class TemporalLayer(nn.Module):
    """Base of every inserted layer; the host glue dispatches on this type."""

    def forward(self, x: torch.Tensor, frames: int, attention: AttentionFn = sdpa_attention) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def check_frames(x: torch.Tensor, frames: int) -> None:
        if frames < 1 or x.shape[0] % frames:
            raise ValueError(f"batch of {x.shape[0]} is not a whole number of {frames}-frame videos")


class TemporalConv(TemporalLayer):
    """1D convolution over frames after a spatial ResBlock: GroupNorm, SiLU, conv (k x 1 x 1), residual.

    The norm takes statistics per frame, so a frame's output depends on other frames only through the conv.
    """

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 32):
        super().__init__()
        self.channels = channels
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.conv = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x, frames, attention=sdpa_attention):
        self.check_frames(x, frames)
        h = F.silu(self.norm(x))
        h = rearrange(h, "(b f) c h w -> b c f h w", f=frames)
        h = self.conv(h)
        return x + rearrange(h, "b c f h w -> (b f) c h w")


class TemporalSelfAttention(nn.Module):
    """Self-attention along frames with a positional encoding added to its input (AnimateDiff `Temporal_Self`)."""

    def __init__(self, channels: int, heads: int, max_frames: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.pos_encoder = nn.Module()
        self.pos_encoder.register_buffer("pe", sinusoidal_encoding(max_frames, channels), persistent=True)

    @property
    def max_frames(self) -> int:
        return self.pos_encoder.pe.shape[1]

    def forward(self, n: torch.Tensor, attention: AttentionFn) -> torch.Tensor:
        frames = n.shape[1]
        n = n + self.pos_encoder.pe[:, :frames].to(n.dtype)
        q, k, v = self.to_q(n), self.to_k(n), self.to_v(n)
        chunks = [attention(q[i:i + MAX_ATTENTION_BATCH], k[i:i + MAX_ATTENTION_BATCH],
                            v[i:i + MAX_ATTENTION_BATCH], self.heads)
                  for i in range(0, q.shape[0], MAX_ATTENTION_BATCH)]
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return self.to_out[0](out)


class GEGLUFeedForward(nn.Module):
    """GEGLU feed-forward with the parameter names of AnimateDiff (`net.0.proj`, `net.2`)."""

    def __init__(self, channels: int, mult: int = 4):
        super().__init__()
        inner = channels * mult
        proj = nn.Module()
        proj.proj = nn.Linear(channels, inner * 2)
        self.net = nn.ModuleList([proj, nn.Dropout(0.0), nn.Linear(inner, channels)])

    def forward(self, x):
        a, gate = self.net[0].proj(x).chunk(2, dim=-1)
        return self.net[2](a * F.gelu(gate))


class TemporalAttention(TemporalLayer):
    """Temporal transformer after a spatial transformer.

    GroupNorm (per frame) -> proj_in -> `attention_blocks` temporal self-attentions, each with a pre-LayerNorm
    and a residual -> optional GEGLU feed-forward with a pre-LayerNorm -> proj_out (zero-initialised) -> residual.
    With two attention blocks, a feed-forward and the projections this is exactly AnimateDiff's motion module.
    AtomoVideo's own layer is lighter (one attention, no feed-forward, no proj_in/proj_out: the block adds only
    what its attentions add, and their `to_out` start at zero), because the layer runs after every spatial
    transformer and its cost and weights add to every step.
    """

    def __init__(self, channels: int, heads: int = 8, max_frames: int = 32, attention_blocks: int = 1,
                 feed_forward: bool = False, projections: bool = True, groups: int = 32):
        super().__init__()
        self.channels = channels
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels) if projections else None
        block = nn.Module()
        block.attention_blocks = nn.ModuleList(
            [TemporalSelfAttention(channels, heads, max_frames) for _ in range(attention_blocks)])
        block.norms = nn.ModuleList([nn.LayerNorm(channels) for _ in range(attention_blocks)])
        if feed_forward:
            block.ff = GEGLUFeedForward(channels)
            block.ff_norm = nn.LayerNorm(channels)
        self.transformer_blocks = nn.ModuleList([block])
        if projections:
            self.proj_out = nn.Linear(channels, channels)
            zero_outputs_(self)
        else:
            self.proj_out = None
            for attn in block.attention_blocks:
                nn.init.zeros_(attn.to_out[0].weight)
                nn.init.zeros_(attn.to_out[0].bias)

    @property
    def max_frames(self) -> int:
        return self.transformer_blocks[0].attention_blocks[0].max_frames

    def forward(self, x, frames, attention=sdpa_attention):
        self.check_frames(x, frames)
        if frames > self.max_frames:
            raise ValueError(f"{frames} frames exceed this layer's positional encoding of {self.max_frames}")
        _, _, height, width = x.shape
        h = self.norm(x)
        h = rearrange(h, "(b f) c h w -> (b h w) f c", f=frames)
        if self.proj_in is not None:
            h = self.proj_in(h)
        start = h
        block = self.transformer_blocks[0]
        for attn, norm in zip(block.attention_blocks, block.norms):
            h = h + attn(norm(h), attention)
        if hasattr(block, "ff"):
            h = h + block.ff(block.ff_norm(h))
        h = self.proj_out(h) if self.proj_out is not None else h - start
        return x + rearrange(h, "(b h w) f c -> (b f) c h w", h=height, w=width)


def set_positional_length(layer: TemporalAttention, length: int) -> None:
    """Recompute the (fixed, sinusoidal) encoding for another maximum length: the trainer extends a public
    motion module's 24 or 32 frames to the length it trains for."""
    for attn in layer.transformer_blocks[0].attention_blocks:
        pe = attn.pos_encoder.pe
        attn.pos_encoder.pe = sinusoidal_encoding(length, pe.shape[-1]).to(pe.device, pe.dtype)


def zero_outputs_(layer: nn.Module) -> None:
    """Make a layer the identity again (its output projections to zero)."""
    if getattr(layer, "proj_out", None) is not None:
        targets = [layer.proj_out]
    elif isinstance(layer, TemporalAttention):
        targets = [a.to_out[0] for a in layer.transformer_blocks[0].attention_blocks]
    else:
        targets = [layer.conv]
    for target in targets:
        nn.init.zeros_(target.weight)
        if target.bias is not None:
            nn.init.zeros_(target.bias)
