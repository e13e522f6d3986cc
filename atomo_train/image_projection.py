"""Training the high-level image injection (the paper's CLIP image tokens): an IP-Adapter projection and the
per-site `to_k_ip` / `to_v_ip` of every cross-attention, from an IP-Adapter SD1.5 file or fresh.

Fresh layers start with `to_k_ip = to_v_ip = 0`, so a fresh adapter adds nothing: the model is still the
identity of its base. The UNet gets `attn2` replace patches (per call, through `transformer_options`) that compute
the same decoupled attention as inference (`atomo_core.decoupled_attention`, the host's optimised attention)
with weight 1, fed with the projected tokens of each sample's conditioning frame. The written AtomoVideo file
carries the adapter as `image_proj.*` (`split_atomovideo_image_proj`), which AtomoVideoCLIPVisionInject reads
with projection "from AtomoVideo weights".
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import comfy.ldm.modules.attention as host_attention

from ..atomo_core import image_projection as ipj
from ..atomo_core.decoupled_attention import decoupled_attention
from ..atomo_core.errors import AtomoVideoError
from ..atomo_host.decoupled_attention import cross_attention_sites
from .errors import ConfigError

TOKENS_KEY = "atomo_image_tokens"
FRESH_TOKENS = {ipj.BASE: 4, ipj.PLUS: 16}


class ImageAdapter(nn.Module):
    """The projection and the per-site image key/value layers (IP-Adapter order: down, up, middle)."""

    def __init__(self, kind: str, projection: nn.Module, layers: list, trainable: bool):
        super().__init__()
        self.kind = kind
        self.clip_input = ipj.CLIP_INPUT[kind]
        self.projection = projection.train()
        self.to_k_ip = nn.ParameterList([nn.Parameter(k.detach().float().clone()) for k, _ in layers])
        self.to_v_ip = nn.ParameterList([nn.Parameter(v.detach().float().clone()) for _, v in layers])
        self.requires_grad_(trainable)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """CLIP features of one frame per clip ([B, D] image_embeds or [B, N, D] hidden states) -> [B, T, C]."""
        return self.projection(features)

    def file_part(self, state: dict | None = None) -> dict:
        """The `image_proj.*` part of an AtomoVideo file (keys without the prefix), from `state` (this module's
        state dict or an EMA copy) or the live values."""
        state = state if state is not None else self.state_dict()
        out = {}
        for k, v in state.items():
            v = v.detach().float().cpu().clone()
            if k.startswith("projection."):
                out[k[len("projection."):]] = v
            else:
                which, i = k.split(".")
                out[f"ip_adapter.{2 * int(i) + 1}.{which}.weight"] = v
        return out


def clip_input_of(model_cfg, init_cfg) -> str:
    """Which CLIP-vision output the run's projection reads (what the cache stores; the hidden states without a
    projection)."""
    if init_cfg.ip_adapter is not None:
        return read_ipadapter(init_cfg.ip_adapter).clip_input
    if model_cfg.image_projection != "none":
        return ipj.CLIP_INPUT[model_cfg.image_projection]
    return ipj.PENULTIMATE


def load_clip_vision(path: Path):
    """The CLIP-vision model of `model.clip_vision`, loaded by ComfyUI as the CLIPVisionLoader node does."""
    import comfy.clip_vision

    try:
        model = comfy.clip_vision.load(str(path))
    except Exception as e:  # the host raises whatever its file reader raises
        raise ConfigError("model.clip_vision", f"{Path(path).name} cannot be read ({str(e).splitlines()[0]}); "
                          "give a CLIP-vision .safetensors file") from None
    if model is None:
        raise ConfigError("model.clip_vision", f"{Path(path).name} is not a CLIP-vision model ComfyUI knows; give "
                          "e.g. CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors (IP-Adapter SD1.5)")
    return model


def read_ipadapter(path: Path) -> ipj.IPAdapterWeights:
    try:
        return ipj.load_ipadapter_file(path)
    except (AtomoVideoError, OSError, RuntimeError) as e:
        raise ConfigError("init.ip_adapter", f"{Path(path).name}: {e}. Give an IP-Adapter SD1.5 file (base, plus "
                          "or full-face), e.g. ip-adapter_sd15.safetensors") from None


def build_adapter(model_cfg, init_cfg, unet, clip_width: int | None, seed: int = 0) -> ImageAdapter | None:
    """The run's adapter (None when it has no image projection). `clip_width`: the width of the cached CLIP
    features, checked against the projection (and the size of a fresh one)."""
    sites = cross_attention_sites(unet)
    if init_cfg.ip_adapter is not None:
        w = read_ipadapter(init_cfg.ip_adapter)
        name = init_cfg.ip_adapter.name
        if model_cfg.image_projection not in ("none", w.kind):
            raise ConfigError("init.ip_adapter", f"{name} is an IP-Adapter '{w.kind}' but model.image_projection "
                              f"is '{model_cfg.image_projection}'; remove model.image_projection or make them agree")
        try:
            ipj.check_sites(w, [(s.inner, s.context) for s in sites], [s.name for s in sites], name)
            if clip_width is not None:
                ipj.check_clip_width(w, clip_width, name)
        except AtomoVideoError as e:
            key = "model.clip_vision" if "CLIP vision model gives" in str(e) else "init.ip_adapter"
            raise ConfigError(key, str(e)) from None
        return ImageAdapter(w.kind, w.projection, w.layers, model_cfg.train_image_projection)
    kind = model_cfg.image_projection
    if kind == "none":
        return None
    if clip_width is None:
        raise ConfigError("model.clip_vision", "a fresh image projection needs the CLIP-vision features in the "
                          "data cache; set model.clip_vision and rebuild the cache")
    cross = sites[0].context
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        if kind == ipj.BASE:
            projection = ipj.ImageProjModel(cross, clip_width, FRESH_TOKENS[kind])
        else:
            projection = ipj.Resampler(dim=cross, depth=4, heads=12, queries=FRESH_TOKENS[kind], clip_dim=clip_width,
                                       output_dim=cross)
    layers = [(torch.zeros(s.inner, s.context), torch.zeros(s.inner, s.context)) for s in sites]
    return ImageAdapter(kind, projection, layers, model_cfg.train_image_projection)


class TrainingImageAttention:
    """`attn2` replace patch of one site: text attention + attention over the batch's image tokens (weight 1).

    The tokens ([B*F, T, C], one clip's tokens repeated over its frames) come in `transformer_options`."""

    def __init__(self, adapter: ImageAdapter, site: int):
        self.adapter, self.site = adapter, site

    def __call__(self, q, k, v, extra_options):
        tokens = extra_options[TOKENS_KEY]
        k_ip = F.linear(tokens.to(q.dtype), self.adapter.to_k_ip[self.site].to(q.dtype))
        v_ip = F.linear(tokens.to(q.dtype), self.adapter.to_v_ip[self.site].to(q.dtype))
        return decoupled_attention(q, (k, v), (k_ip, v_ip), extra_options["n_heads"], 1.0,
                                   attention=host_attention.optimized_attention,
                                   attn_precision=extra_options.get("attn_precision"),
                                   transformer_options=extra_options)

    def __deepcopy__(self, memo):
        return self


def attn2_patches(adapter: ImageAdapter, unet) -> dict:
    """{site key: patch} for `transformer_options["patches_replace"]["attn2"]`."""
    sites = cross_attention_sites(unet)
    if len(sites) != len(adapter.to_k_ip):
        raise RuntimeError(f"the image adapter has {len(adapter.to_k_ip)} layers, the UNet {len(sites)} sites")
    return {s.key: TrainingImageAttention(adapter, i) for i, s in enumerate(sites)}
