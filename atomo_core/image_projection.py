"""CLIP-image projections of IP-Adapter SD1.5 files, their detection and validation (plain PyTorch, no host).

An IP-Adapter file has two parts:
- `image_proj`: turns a CLIP vision output into image tokens of the UNet's cross-attention width (768 for SD1.5):
  * base (`ip-adapter_sd15`, `_light`, `_vit-G`): `ImageProjModel` over the pooled `image_embeds`, 4 tokens;
  * plus (`ip-adapter-plus_sd15`, `-plus-face`): a perceiver `Resampler` over the penultimate hidden states, 16;
  * full (`ip-adapter-full-face_sd15`): an MLP over the penultimate hidden states, one token per patch (257);
- `ip_adapter`: `"{n}.to_k_ip.weight"` / `"{n}.to_v_ip.weight"` (bias-free, `[C, 768]`) for n = 1, 3, 5, ...: one
  pair per cross-attention site of the UNet, numbered in diffusers order: down blocks, up blocks, middle block.

Layouts: `.bin` = `{"image_proj": {...}, "ip_adapter": {...}}`; `.safetensors` = flat `image_proj.*` and
`ip_adapter.*`. In an AtomoVideo file the whole adapter lives under the `image_proj.` prefix: the projection with
its own key names and the per-site layers as `ip_adapter.{n}.to_k_ip.weight` (see `split_atomovideo_image_proj`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import WeightFormatError

BASE, PLUS, FULL = "base", "plus", "full"
# Which CLIP vision output each projection reads.
IMAGE_EMBEDS, PENULTIMATE = "image_embeds", "penultimate_hidden_states"
CLIP_INPUT = {BASE: IMAGE_EMBEDS, PLUS: PENULTIMATE, FULL: PENULTIMATE}
SD15_CROSS_DIM = 768
RESAMPLER_DIM_HEAD = 64


# ---------------------------------------------------------------------------------------------------------------
# The projection modules (same parameter names as tencent-ailab/IP-Adapter, so state dicts load strictly)
# ---------------------------------------------------------------------------------------------------------------
class ImageProjModel(nn.Module):
    """Pooled CLIP embedding [B, clip_dim] -> `tokens` image tokens [B, tokens, cross_dim]."""

    def __init__(self, cross_dim: int = SD15_CROSS_DIM, clip_dim: int = 1024, tokens: int = 4):
        super().__init__()
        self.cross_dim, self.tokens = cross_dim, tokens
        self.proj = nn.Linear(clip_dim, tokens * cross_dim)
        self.norm = nn.LayerNorm(cross_dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(embeds).reshape(-1, self.tokens, self.cross_dim))


class MLPProjModel(nn.Module):
    """Full-face: per-patch MLP over the penultimate hidden states [B, 257, clip_dim] -> [B, 257, cross_dim]."""

    def __init__(self, cross_dim: int = SD15_CROSS_DIM, clip_dim: int = 1280):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(clip_dim, clip_dim), nn.GELU(), nn.Linear(clip_dim, cross_dim),
                                  nn.LayerNorm(cross_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


def _feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    inner = int(dim * mult)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(),
                         nn.Linear(inner, dim, bias=False))


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int = RESAMPLER_DIM_HEAD, heads: int = 8):
        super().__init__()
        self.dim_head, self.heads = dim_head, heads
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        latents = self.norm2(latents)
        b, n, _ = latents.shape
        q = self._heads(self.to_q(latents))
        k, v = self.to_kv(torch.cat((x, latents), dim=-2)).chunk(2, dim=-1)
        k, v = self._heads(k), self._heads(v)
        scale = 1.0 / math.sqrt(math.sqrt(self.dim_head))
        w = (q * scale) @ (k * scale).transpose(-2, -1)
        w = torch.softmax(w.float(), dim=-1).to(w.dtype)
        out = (w @ v).permute(0, 2, 1, 3).reshape(b, n, -1)
        return self.to_out(out)


class Resampler(nn.Module):
    """IP-Adapter plus: `queries` learned latents attend to the CLIP hidden states [B, N, clip_dim]."""

    def __init__(self, dim: int = 768, depth: int = 4, dim_head: int = RESAMPLER_DIM_HEAD, heads: int = 12,
                 queries: int = 16, clip_dim: int = 1280, output_dim: int = SD15_CROSS_DIM, ff_mult: int = 4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, queries, dim) / dim ** 0.5)
        self.proj_in = nn.Linear(clip_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(
            [nn.ModuleList([PerceiverAttention(dim, dim_head, heads), _feed_forward(dim, ff_mult)])
             for _ in range(depth)])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        latents = self.latents.repeat(hidden.shape[0], 1, 1)
        x = self.proj_in(hidden)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


# ---------------------------------------------------------------------------------------------------------------
# Files: splitting, detection, validation
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class IPAdapterWeights:
    """A validated IP-Adapter: its projection and its per-site key/value layers."""
    kind: str                      # BASE, PLUS or FULL
    projection: nn.Module          # loaded strictly
    layers: list                   # [(to_k_ip [C, cross], to_v_ip [C, cross])] in IP-Adapter order n = 1, 3, ...
    clip_input: str                # IMAGE_EMBEDS or PENULTIMATE
    clip_width: int                # width of the CLIP output the projection reads
    cross_dim: int
    tokens: int                    # image tokens per image (257 for FULL with ViT-H)

    def describe(self) -> str:
        return (f"IP-Adapter {self.kind} ({self.tokens} tokens from CLIP {self.clip_input} of width "
                f"{self.clip_width}, {len(self.layers)} attention layers)")


def read_ipadapter_file(path: str | Path) -> dict:
    """Tensors of an IP-Adapter file as one flat dict with `image_proj.`/`ip_adapter.` prefixes.

    `.safetensors` are read with safetensors, anything else with `torch.load(weights_only=True)`: no file can run
    code on load.
    """
    from .weight_files import read_file

    path = Path(path)
    obj, _ = read_file(path)
    return obj if path.suffix == ".safetensors" else flatten_ipadapter(obj, path.name)


def flatten_ipadapter(obj, name: str = "the file") -> dict:
    """`{"image_proj": {...}, "ip_adapter": {...}}` (the `.bin` layout) or a flat dict -> flat prefixed dict."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightFormatError(f"{name} does not hold a dictionary of tensors")
    flat = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                flat[f"{k}.{k2}"] = v2
        else:
            flat[k] = v
    bad = [k for k, v in flat.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightFormatError(f"{name} holds non-tensor entries (e.g. '{bad[0]}')")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in flat.items()}


def split_prefixed(flat: dict, name: str = "the file") -> tuple[dict, dict]:
    """(image_proj, ip_adapter) of a flat IP-Adapter dict; anything else means it is not an IP-Adapter file."""
    proj, ip, other = {}, {}, []
    for k, v in flat.items():
        if k.startswith("image_proj."):
            proj[k[len("image_proj."):]] = v
        elif k.startswith("ip_adapter."):
            ip[k[len("ip_adapter."):]] = v
        else:
            other.append(k)
    if not proj or not ip:
        sample = ", ".join(sorted(flat)[:3]) or "no tensors"
        raise WeightFormatError(f"{name} is not an IP-Adapter file: it needs 'image_proj.*' and 'ip_adapter.*' "
                                f"tensors, found {len(flat)} tensors (e.g. {sample})")
    if other:
        raise WeightFormatError(f"{name}: unexpected tensors {sorted(other)[:3]} beside 'image_proj.*' and "
                                "'ip_adapter.*'; this is not a plain IP-Adapter SD1.5 file")
    return proj, ip


def split_atomovideo_image_proj(image_proj: dict, name: str = "the AtomoVideo file") -> tuple[dict, dict]:
    """The `image_proj.*` part of an AtomoVideo file: projection keys plus `ip_adapter.{n}.to_k_ip.weight`."""
    proj = {k: v for k, v in image_proj.items() if not k.startswith("ip_adapter.")}
    ip = {k[len("ip_adapter."):]: v for k, v in image_proj.items() if k.startswith("ip_adapter.")}
    if not proj or not ip:
        raise WeightFormatError(
            f"{name} has an incomplete image projection: it needs the projection ('image_proj.proj.weight' or "
            "'image_proj.latents'...) and the attention layers ('image_proj.ip_adapter.1.to_k_ip.weight'...)")
    return proj, ip


def detect_kind(proj: dict, ip: dict, name: str = "the file") -> str:
    """BASE, PLUS or FULL for SD1.5 IP-Adapters; a clear error for other families."""
    if any(".to_q_lora." in k or "to_k_lora" in k for k in ip) or "perceiver_resampler.proj_in.weight" in proj:
        raise WeightFormatError(f"{name} is an IP-Adapter FaceID file (LoRA layers / InsightFace projection); "
                                "only IP-Adapter SD1.5 base, plus and full-face files are supported")
    k1 = ip.get("1.to_k_ip.weight")
    if k1 is None or k1.ndim != 2:
        raise WeightFormatError(f"{name} has no 'ip_adapter.1.to_k_ip.weight' [C, 768]: unknown IP-Adapter layout "
                                f"(keys e.g. {sorted(ip)[:3]})")
    if k1.shape[1] != SD15_CROSS_DIM:
        family = "SDXL" if k1.shape[1] == 2048 else f"a model with text width {k1.shape[1]}"
        raise WeightFormatError(f"{name} is an IP-Adapter for {family} (cross-attention width {k1.shape[1]}); "
                                f"SD1.5 needs width {SD15_CROSS_DIM}. Use an SD1.5 IP-Adapter (e.g. "
                                "ip-adapter_sd15 or ip-adapter-plus_sd15)")
    if "proj.3.weight" in proj:
        return FULL
    if "latents" in proj:
        return PLUS
    if "proj.weight" in proj and "norm.weight" in proj:
        return BASE
    raise WeightFormatError(f"{name}: unknown image projection (keys e.g. {sorted(proj)[:4]}); expected the "
                            "ImageProjModel (base), Resampler (plus) or MLP (full-face) of IP-Adapter SD1.5")


def build_projection(kind: str, proj: dict, name: str = "the file") -> tuple[nn.Module, int, int]:
    """(module loaded strictly, CLIP input width, tokens per image) for a projection state dict."""
    try:
        with torch.device("meta"):  # no random init of full-size layers: every value comes from the file
            return _load_projection(kind, proj, name)
    except KeyError as e:
        raise WeightFormatError(f"{name}: the {kind} image projection lacks tensor {e}") from None


def _load_projection(kind: str, proj: dict, name: str) -> tuple[nn.Module, int, int]:
    if kind == BASE:
        out_dim, clip_dim = proj["proj.weight"].shape
        cross = proj["norm.weight"].shape[0]
        if out_dim % cross:
            raise WeightFormatError(f"{name}: 'proj.weight' has {out_dim} outputs, not a multiple of {cross}")
        module, tokens = ImageProjModel(cross, clip_dim, out_dim // cross), out_dim // cross
    elif kind == PLUS:
        _, queries, dim = proj["latents"].shape
        clip_dim = proj["proj_in.weight"].shape[1]
        depth = len({k.split(".")[1] for k in proj if k.startswith("layers.")})
        inner = proj["layers.0.0.to_q.weight"].shape[0]
        ff_mult = proj["layers.0.1.1.weight"].shape[0] // dim
        output_dim = proj["proj_out.weight"].shape[0]
        module = Resampler(dim, depth, RESAMPLER_DIM_HEAD, inner // RESAMPLER_DIM_HEAD, queries, clip_dim,
                           output_dim, ff_mult)
        tokens = queries
    elif kind == FULL:
        clip_dim = proj["proj.0.weight"].shape[1]
        module, tokens = MLPProjModel(proj["proj.2.weight"].shape[0], clip_dim), 257
    else:
        raise WeightFormatError(f"unknown projection kind '{kind}'")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(proj))
    unexpected = sorted(set(proj) - set(expected))
    if missing or unexpected:
        raise WeightFormatError(f"{name}: the {kind} image projection does not load: missing keys "
                                f"{missing[:4]}, unexpected keys {unexpected[:4]}")
    for k, v in expected.items():
        if v.shape != proj[k].shape:
            raise WeightFormatError(f"{name}: '{k}' has shape {list(proj[k].shape)}, expected {list(v.shape)}")
    module.load_state_dict({k: v.detach().float().cpu() for k, v in proj.items()}, strict=True, assign=True)
    return module.eval().requires_grad_(False), clip_dim, tokens


def ip_layers(ip: dict, name: str = "the file") -> list:
    """[(to_k_ip, to_v_ip)] ordered by n = 1, 3, 5, ...; every key must be one of these."""
    numbers = set()
    for k in ip:
        n, _, rest = k.partition(".")
        if not n.isdigit() or rest not in ("to_k_ip.weight", "to_v_ip.weight"):
            raise WeightFormatError(f"{name}: unexpected attention tensor 'ip_adapter.{k}' (expected "
                                    "'ip_adapter.{n}.to_k_ip.weight' / 'to_v_ip.weight')")
        numbers.add(int(n))
    expected = [2 * i + 1 for i in range(len(numbers))]
    if sorted(numbers) != expected:
        raise WeightFormatError(f"{name}: attention layers numbered {sorted(numbers)[:8]}...; expected the odd "
                                f"numbers 1, 3, ..., {2 * len(numbers) - 1}")
    layers = []
    for n in expected:
        k, v = ip.get(f"{n}.to_k_ip.weight"), ip.get(f"{n}.to_v_ip.weight")
        if k is None or v is None:
            raise WeightFormatError(f"{name}: layer {n} lacks 'to_k_ip' or 'to_v_ip'")
        if k.ndim != 2 or k.shape != v.shape:
            raise WeightFormatError(f"{name}: layer {n} has to_k_ip {list(k.shape)} and to_v_ip {list(v.shape)}")
        layers.append((k.float(), v.float()))
    return layers


def load_ipadapter(proj: dict, ip: dict, name: str = "the file") -> IPAdapterWeights:
    kind = detect_kind(proj, ip, name)
    module, clip_width, tokens = build_projection(kind, proj, name)
    layers = ip_layers(ip, name)
    return IPAdapterWeights(kind, module, layers, CLIP_INPUT[kind], clip_width, layers[0][0].shape[1], tokens)


def load_ipadapter_file(path: str | Path) -> IPAdapterWeights:
    name = Path(path).name
    return load_ipadapter(*split_prefixed(read_ipadapter_file(path), name), name)


def check_sites(weights: IPAdapterWeights, site_dims: list[tuple[int, int]], site_names: list[str],
                name: str = "the file") -> None:
    """The file's layers must match the model's cross-attention sites one to one: count, width, text width."""
    if len(weights.layers) != len(site_dims):
        raise WeightFormatError(
            f"{name} has {len(weights.layers)} attention layers but the model has {len(site_dims)} cross-attention "
            f"sites ({', '.join(site_names[:4])}...); it was made for a different UNet. Choose an IP-Adapter made for "
            f"this model's UNet (SD1.5: ip-adapter_sd15, ip-adapter-plus_sd15), or use 'from AtomoVideo weights'")
    for i, ((k, _), (inner, ctx), site) in enumerate(zip(weights.layers, site_dims, site_names)):
        if tuple(k.shape) != (inner, ctx):
            raise WeightFormatError(f"{name}: layer {2 * i + 1} is {list(k.shape)} but site {site} needs "
                                    f"[{inner}, {ctx}]; it was made for a different UNet. Choose an IP-Adapter made for this "
                                    "model's UNet (SD1.5: ip-adapter_sd15, ip-adapter-plus_sd15)")


def check_clip_width(weights: IPAdapterWeights, width: int, name: str = "the file") -> None:
    if width != weights.clip_width:
        hint = {1024: "CLIP ViT-H (CLIP-ViT-H-14-laion2B-s32B-b79K)", 1280: "CLIP ViT-H (penultimate) or bigG"}
        want = hint.get(weights.clip_width, f"a CLIP vision model whose {weights.clip_input} is {weights.clip_width} wide")
        raise WeightFormatError(
            f"wrong width: the CLIP vision model gives {weights.clip_input} of width {width}, but {name} "
            f"({weights.kind}) projects width {weights.clip_width}. Load {want}")
