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

from .frame_groupnorm import group_norm_across_frames

AttentionFn = Callable[..., torch.Tensor]

# Sequences per attention call: xformers fails with "invalid configuration argument" above 65535 (peer issue
# ADE #6), so the (B*H*W) temporal sequences are processed in chunks of at most this many.
MAX_ATTENTION_BATCH = 32768
# Without autograd the transformer blocks run over chunks of about this many tokens (sequences x frames): their
# temporaries (the feed-forward's 8C-wide projection above all) stay a few MiB, reused from one chunk to the next
# instead of freshly allocated (and page-faulted) full-size tensors, and the peak memory of a layer drops.
INFERENCE_CHUNK_TOKENS = 1024


def short_sequence_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Attention over many short sequences (N, F, heads*d), F = frames: the temporal layers' default.

    Torch SDPA takes the heads as strided views, so no head-split copies are made, and on the CPU its fused
    kernel writes its output in (N, F, heads, d) order, so merging the heads back is free as well (about half the
    time of the host's sub-quadratic CPU attention for 16-32 frames, which chunks for long sequences). Sequences
    go in chunks of `MAX_ATTENTION_BATCH` (CUDA grid limits).
    """
    n, length, inner = q.shape
    d = inner // heads

    def one(qc, kc, vc):
        out = F.scaled_dot_product_attention(*(t.unflatten(-1, (heads, d)).transpose(1, 2) for t in (qc, kc, vc)))
        return out.transpose(1, 2).reshape(qc.shape[0], length, inner)

    if n <= MAX_ATTENTION_BATCH:
        return one(q, k, v)
    return torch.cat([one(q[i:i + MAX_ATTENTION_BATCH], k[i:i + MAX_ATTENTION_BATCH], v[i:i + MAX_ATTENTION_BATCH])
                      for i in range(0, n, MAX_ATTENTION_BATCH)])


def sinusoidal_encoding(length: int, channels: int) -> torch.Tensor:
    """AnimateDiff's positional encoding over frames: sin on even, cos on odd channels, base 10000."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
    pe = torch.zeros(1, length, channels)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


class TemporalLayer(nn.Module):
    """Base of every inserted layer; the host glue dispatches on this type.

    `forward(x, frames, attention=None, norm_across_frames=False)`: `attention` replaces the default
    `short_sequence_attention`; `norm_across_frames` takes the layer's GroupNorm statistics over all frames of a
    video (what AnimateDiff-Evolved's global GroupNorm patch does to every GroupNorm for v1 and PIA files).
    """

    def forward(self, x: torch.Tensor, frames: int, attention: AttentionFn | None = None,
                norm_across_frames: bool = False) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def check_frames(x: torch.Tensor, frames: int) -> None:
        if frames < 1 or x.shape[0] % frames:
            raise ValueError(f"batch of {x.shape[0]} is not a whole number of {frames}-frame videos")

    def normalize(self, x: torch.Tensor, frames: int, across_frames: bool) -> torch.Tensor:
        norm = self.norm
        if across_frames and frames > 1:
            return group_norm_across_frames(x, frames, norm.num_groups, norm.weight, norm.bias, norm.eps)
        return norm(x)


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

    def forward(self, x, frames, attention=None, norm_across_frames=False):
        self.check_frames(x, frames)
        if not torch.is_grad_enabled():
            return self._forward_inference(x, frames, norm_across_frames)
        h = F.silu(self.normalize(x, frames, norm_across_frames))
        h = rearrange(h, "(b f) c h w -> b c f h w", f=frames)
        h = self.conv(h)
        return x + rearrange(h, "b c f h w -> (b f) c h w")

    def _forward_inference(self, x, frames, norm_across_frames):
        """The same convolution as one C x C matmul per tap on the frames-as-batch layout, each added to the
        frames it reaches: no `b c f h w` copies in or out (about 15% faster than Conv3d on the CPU)."""
        bf, c = x.shape[:2]
        b, taps = bf // frames, self.conv.kernel_size[0]
        pad = taps // 2
        h = F.silu(self.normalize(x, frames, norm_across_frames), inplace=True).reshape(b, frames, c, -1)
        w = self.conv.weight.view(c, c, taps)
        out = torch.matmul(w[:, :, pad], h)
        if self.conv.bias is not None:
            out += self.conv.bias.view(1, 1, c, 1)
        for j in range(taps):
            s = j - pad  # out[f] += W_j h[f + s]
            if j == pad or abs(s) >= frames:
                continue
            if s < 0:
                out[:, -s:] += torch.matmul(w[:, :, j], h[:, :frames + s])
            else:
                out[:, :frames - s] += torch.matmul(w[:, :, j], h[:, s:])
        out += x.reshape(out.shape)
        return out.view(x.shape)


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

    def forward(self, n: torch.Tensor, attention: AttentionFn | None = None, inplace: bool = False) -> torch.Tensor:
        """`n` (N, F, C), already layer-normed; `inplace` lets the positional encoding be added into `n`."""
        frames = n.shape[1]
        pe = self.pos_encoder.pe[:, :frames]
        if pe.dtype != n.dtype or pe.device != n.device:
            pe = pe.to(device=n.device, dtype=n.dtype)
        n = n.add_(pe) if inplace else n + pe
        q, k, v = self.to_q(n), self.to_k(n), self.to_v(n)
        if attention is None:
            out = short_sequence_attention(q, k, v, self.heads)
        else:
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

    def forward(self, x, inplace: bool = False):
        a, gate = self.net[0].proj(x).chunk(2, dim=-1)
        if inplace:  # the gate is a view of the fresh projection: GELU in place, one 4C-wide temporary less
            return self.net[2](a * torch._C._nn.gelu_(gate))
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

    def forward(self, x, frames, attention=None, norm_across_frames=False):
        self.check_frames(x, frames)
        if frames > self.max_frames:
            raise ValueError(f"{frames} frames exceed this layer's positional encoding of {self.max_frames}")
        bf, channels, height, width = x.shape
        b = bf // frames
        # Without autograd, sums go into tensors this call allocated (fewer full-size temporaries).
        inplace = not torch.is_grad_enabled()
        h = self.normalize(x, frames, norm_across_frames)
        h = h.reshape(b, frames, channels, height * width).permute(0, 3, 1, 2)  # (b f) c h w -> b (h w) f c
        h = self.proj_in(h) if self.proj_in is not None else h.contiguous()  # the one copy into this layout
        h = h.view(b * height * width, frames, -1)
        block = self.transformer_blocks[0]
        light = self.proj_out is None
        if light and len(block.attention_blocks) == 1 and not hasattr(block, "ff"):
            # AtomoVideo's light layer: the output is the attention's own output
            attn, norm = block.attention_blocks[0], block.norms[0]
            if not inplace:
                h = attn(norm(h), attention)
            else:
                out = torch.empty_like(h)
                for rows in _chunk_rows(h):
                    out[rows] = attn(norm(h[rows]), attention, True)
                h = out
        elif inplace and not light:
            for rows in _chunk_rows(h):  # each chunk of sequences through the whole block, in place
                part = h[rows]
                for attn, norm in zip(block.attention_blocks, block.norms):
                    part.add_(attn(norm(part), attention, True))
                if hasattr(block, "ff"):
                    part.add_(block.ff(block.ff_norm(part), True))
            h = self.proj_out(h)
        else:
            start = h
            for attn, norm in zip(block.attention_blocks, block.norms):
                h = h + attn(norm(h), attention)
            if hasattr(block, "ff"):
                h = h + block.ff(block.ff_norm(h))
            h = self.proj_out(h) if not light else h - start
        h = h.view(b, height, width, frames, channels).permute(0, 3, 4, 1, 2)  # back to (b f) c h w order
        if not inplace:
            return x + h.reshape(x.shape)
        out = torch.empty_like(x, memory_format=torch.contiguous_format)  # the residual sum in one pass
        torch.add(x.reshape(b, frames, channels, height, width), h, out=out.view(b, frames, channels, height, width))
        return out


def _chunk_rows(h: torch.Tensor):
    step = max(1, INFERENCE_CHUNK_TOKENS // h.shape[1])
    return [slice(i, i + step) for i in range(0, h.shape[0], step)]


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
