"""Decoupled cross-attention (IP-Adapter): text attention plus weighted attention over image tokens.

    out = Attn(q, K_text, V_text) + weight * Attn(q, to_k_ip(tokens), to_v_ip(tokens))

`q`, `K_text`, `V_text` are the already-projected [B, L, heads * dim_head] tensors of the host's cross-attention
(its output projection follows). The image tokens are shared by every frame of a video; the batch holds one chunk
of frames per entry of `cond_or_uncond` (0 = cond, 1 = uncond), in any order, and the unconditional chunks use the
tokens of a blank image. Plain PyTorch; the attention function is passed in (the host's optimised one).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head, written out: the definition the optimised paths must match."""
    b, lq, inner = q.shape
    d = inner // heads

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, d).transpose(1, 2)

    w = torch.softmax((split(q) @ split(k).transpose(-2, -1)) * d ** -0.5, dim=-1)
    return (w @ split(v)).transpose(1, 2).reshape(b, lq, inner)


def _default_attention(q, k, v, heads, **kwargs):
    return reference_attention(q, k, v, heads)


def tokens_for_batch(cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor, cond_or_uncond, batch: int
                     ) -> torch.Tensor:
    """[batch, T, D]: the cond or uncond tokens ([T, D] each) for every item, chunk by chunk."""
    chunks = list(cond_or_uncond) if cond_or_uncond else [0]
    if batch % len(chunks):
        raise RuntimeError(f"batch of {batch} does not split into {len(chunks)} cond/uncond chunks")
    per = batch // len(chunks)
    parts = [(uncond_tokens if c == 1 else cond_tokens).unsqueeze(0).expand(per, -1, -1) for c in chunks]
    return torch.cat(parts, dim=0)


def decoupled_attention(q, text_kv: tuple, image_kv: tuple, heads: int, weight: float, attention=None,
                        text_out=None, **attention_kwargs) -> torch.Tensor:
    """Text attention over `text_kv` = (k, v) (or `text_out` when already computed) + weight * attention over
    the image keys/values `image_kv` = (k_ip, v_ip).

    `weight == 0` returns the text attention unchanged (bit-identical to no injection).
    """
    attention = attention or _default_attention
    out = attention(q, *text_kv, heads, **attention_kwargs) if text_out is None else text_out
    if weight == 0:
        return out
    k_ip, v_ip = image_kv
    ip = attention(q, k_ip.to(q.dtype), v_ip.to(q.dtype), heads, **attention_kwargs)
    return out + ip * weight


def shared_token_attention(q: torch.Tensor, token_kv: list, heads: int) -> torch.Tensor:
    """Attention of `q` [B, L, C] over image keys/values shared by every item of a chunk: `token_kv` holds one
    (k [T, C], v [T, C]) per chunk of B / len(token_kv) consecutive items.

    Each chunk's queries attend to the same T keys, so they form one sequence of (B / chunks) * L queries against
    T keys: one SDPA call per chunk, without materialising the keys and values for every frame
    (`tokens_for_batch`) or splitting the attention into one small matmul per frame.
    """
    b, length, inner = q.shape
    if b % len(token_kv):
        raise RuntimeError(f"batch of {b} does not split into {len(token_kv)} cond/uncond chunks")
    per, d = b // len(token_kv), inner // heads
    out = torch.empty_like(q)
    for i, (k, v) in enumerate(token_kv):
        qi = q[i * per:(i + 1) * per].reshape(1, per * length, heads, d).transpose(1, 2)
        ki, vi = (t.to(q.dtype).reshape(1, -1, heads, d).transpose(1, 2) for t in (k, v))
        o = F.scaled_dot_product_attention(qi, ki, vi)
        out[i * per:(i + 1) * per] = o.transpose(1, 2).reshape(per, length, inner)
    return out


def is_active(sigma: float, sigma_start: float, sigma_end: float) -> bool:
    """Active between start and end percent: sigma_start >= sigma >= sigma_end (sigmas fall during sampling)."""
    return sigma_end <= sigma <= sigma_start


class ImageKeyValues(nn.Module):
    """`to_k_ip` / `to_v_ip` (bias-free) of every cross-attention site, with the image tokens of one image prompt.

    Kept out of the host's `model_options` deep copies by the patch objects that reference it; moved to the
    model's device and dtype in place.
    """

    def __init__(self, layers: list, cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor):
        super().__init__()
        self.to_k_ip = nn.ModuleList()
        self.to_v_ip = nn.ModuleList()
        for k, v in layers:
            for mods, w in ((self.to_k_ip, k), (self.to_v_ip, v)):
                with torch.device("meta"):  # no throw-away random init; the values come from the file
                    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
                lin.weight = nn.Parameter(w.detach().float().clone(), requires_grad=False)
                mods.append(lin)
        self.register_buffer("cond_tokens", cond_tokens.detach().float().clone())
        self.register_buffer("uncond_tokens", uncond_tokens.detach().float().clone())
        self.requires_grad_(False)

    def follow(self, like: torch.Tensor) -> None:
        """Move to `like`'s device and dtype when they differ (the host may skip calling `.to`)."""
        p = self.cond_tokens
        if p.device != like.device or p.dtype != like.dtype:
            self.to(device=like.device, dtype=like.dtype)

    def _apply(self, fn, *args, **kwargs):
        self._projected = {}  # moved or cast: project again
        return super()._apply(fn, *args, **kwargs)

    def projected(self, site: int) -> tuple:
        """((k_cond, v_cond), (k_uncond, v_uncond)) of `site`, each [T, C]: the weights and tokens are frozen, so
        they are projected once (per device and dtype) instead of at every UNet call."""
        cache = self.__dict__.setdefault("_projected", {})
        found = cache.get(site)
        if found is None:
            k, v = self.to_k_ip[site], self.to_v_ip[site]
            with torch.no_grad():
                found = ((k(self.cond_tokens), v(self.cond_tokens)), (k(self.uncond_tokens), v(self.uncond_tokens)))
            cache[site] = found
        return found

    def token_kv(self, site: int, cond_or_uncond) -> list:
        """The (k, v) of each cond/uncond chunk of a batch, for `shared_token_attention`."""
        cond, uncond = self.projected(site)
        return [uncond if c == 1 else cond for c in (list(cond_or_uncond) if cond_or_uncond else [0])]

    def keys_values(self, site: int, cond_or_uncond, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[batch, T, C] image keys and values of `site` (projected once per branch, then shared by the frames)."""
        (k_cond, v_cond), (k_uncond, v_uncond) = self.projected(site)
        return (tokens_for_batch(k_cond, k_uncond, cond_or_uncond, batch),
                tokens_for_batch(v_cond, v_uncond, cond_or_uncond, batch))
