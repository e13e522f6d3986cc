"""The high-level image injection as host patches: IP-Adapter-style decoupled cross-attention at every attn2.

Every cross-attention (attn2) site of the UNet, read from the model's SpatialTransformers (the SD1.5 middle block
included, which ComfyUI keys as `("middle", 0)`), gets an `attn2` replace patch computing

    text attention + weight * attention over the image tokens

All frames share the image tokens; the unconditional branch uses the tokens of a blank image. The patch objects
share one `ImageKeyValues` module and return themselves from `__deepcopy__`, so `ModelPatcher.clone()` never
copies the weights; `.to()` (called by the host when loading) and a per-call check move them to the model's
device and dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import comfy.ldm.modules.attention as host_attention
import comfy.patcher_extension
from comfy.ldm.modules.attention import SpatialTransformer

from ..atomo_core import image_projection as ipj
from ..atomo_core.decoupled_attention import ImageKeyValues, is_active, shared_token_attention
from ..atomo_core.errors import AtomoVideoError, in_field
from ..atomo_core.image_preparation import to_rgb
from ..atomo_core.unet_sites import CrossAttentionSite
from .image_tokens import image_tokens, load_projection

CALLBACK_KEY = "atomovideo_clip_vision"


def cross_attention_sites(unet) -> list[CrossAttentionSite]:
    """Every attn2 of the UNet in IP-Adapter order (down, up, middle)."""
    groups: dict = {"input": [], "output": [], "middle": []}

    def scan(block_name, number, block):
        for child in block.children():
            if isinstance(child, SpatialTransformer):
                for bi, tb in enumerate(child.transformer_blocks):
                    if getattr(tb, "attn2", None) is not None:
                        weight = tb.attn2.to_k.weight
                        groups[block_name].append(CrossAttentionSite(block_name, number, bi, weight.shape[0],
                                                                     weight.shape[1]))

    for i, block in enumerate(unet.input_blocks):
        scan("input", i, block)
    if getattr(unet, "middle_block", None) is not None:
        scan("middle", 0, unet.middle_block)
    for i, block in enumerate(unet.output_blocks):
        scan("output", i, block)
    return groups["input"] + groups["output"] + groups["middle"]


class SigmaRange:
    """The sigmas of start/end percent, computed from the model's sampling when a sampling run starts."""

    def __init__(self, start_percent: float, end_percent: float, model_sampling=None):
        self.start_percent, self.end_percent = start_percent, end_percent
        self.sigma_start, self.sigma_end = float("inf"), 0.0
        if model_sampling is not None:
            self.update(model_sampling)

    def update(self, model_sampling) -> None:
        self.sigma_start = float(model_sampling.percent_to_sigma(self.start_percent))
        self.sigma_end = float(model_sampling.percent_to_sigma(self.end_percent))

    def on_pre_run(self, patcher) -> None:
        self.update(patcher.get_model_object("model_sampling"))

    def active(self, extra_options: dict) -> bool:
        sigmas = extra_options.get("sigmas")
        if sigmas is None:
            return True
        return is_active(float(sigmas.detach().flatten()[0]), self.sigma_start, self.sigma_end)

    def __deepcopy__(self, memo):
        return self


class DecoupledAttentionPatch:
    """`patches_replace["attn2"]` entry for one site; chains to a replace patch that was there before."""

    def __init__(self, kv: ImageKeyValues, site: int, weight: float, window: SigmaRange, previous=None):
        self.kv, self.site, self.weight, self.window, self.previous = kv, site, weight, window, previous

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        kwargs = {"attn_precision": extra_options.get("attn_precision"), "transformer_options": extra_options}
        if self.previous is not None:
            text = self.previous(q, k, v, extra_options)
        else:
            text = host_attention.optimized_attention(q, k, v, heads, **kwargs)
        if self.weight == 0 or not self.window.active(extra_options):
            return text
        self.kv.follow(q)
        # the image tokens are the same for every frame of a chunk: one attention per chunk, keys projected once
        image = shared_token_attention(q, self.kv.token_kv(self.site, extra_options.get("cond_or_uncond")), heads)
        return text + image * self.weight

    def to(self, device_or_dtype):
        current = self.kv.cond_tokens
        if isinstance(device_or_dtype, torch.dtype):
            if device_or_dtype.is_floating_point and device_or_dtype != current.dtype:
                self.kv.to(dtype=device_or_dtype)
        elif torch.device(device_or_dtype) != current.device:
            self.kv.to(device=device_or_dtype)
        if self.previous is not None and hasattr(self.previous, "to"):
            self.previous = self.previous.to(device_or_dtype)
        return self

    def __deepcopy__(self, memo):
        return self


@dataclass(frozen=True)
class Injection:
    """What to inject: the projection choice, its strength and the part of sampling it is active in."""
    projection: str
    weight: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0

    def check(self) -> None:
        for name, value in (("start_percent", self.start_percent), ("end_percent", self.end_percent)):
            if not 0.0 <= value <= 1.0:
                raise AtomoVideoError(name, f"{value} is outside 0..1; set a value from 0 (first step) to 1 "
                                            "(last step)")
        if self.start_percent > self.end_percent:
            raise AtomoVideoError("end_percent", f"end {self.end_percent} is before start {self.start_percent}; "
                                  "the injection would never be active: set end_percent to at least "
                                  "start_percent (start 0, end 1 = the whole run)")


def inject(model, clip_vision, image, injection: Injection):
    """A clone of `model` whose every cross-attention also attends to the image tokens of `image`."""
    injection.check()
    if not isinstance(image, torch.Tensor):
        raise AtomoVideoError("image", f"expected an IMAGE tensor, got {type(image).__name__}")
    with in_field("image"):
        image = to_rgb(image)
    if image.shape[0] < 1:
        raise AtomoVideoError("image", "the image batch is empty")
    weights, name = load_projection(model, injection.projection)
    sites = cross_attention_sites(model.get_model_object("diffusion_model"))
    if not sites:
        raise AtomoVideoError("model", "this model has no cross-attention layers to inject the image into")
    with in_field("projection"):
        ipj.check_sites(weights, [(s.inner, s.context) for s in sites], [s.name for s in sites], name)
    kv = ImageKeyValues(weights.layers, *image_tokens(clip_vision, weights, image, name))
    window = SigmaRange(injection.start_percent, injection.end_percent, model.get_model_object("model_sampling"))
    m = model.clone()
    replaced = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    for i, site in enumerate(sites):
        previous = replaced.get(site.key, replaced.get(site.key[:2]))
        patch = DecoupledAttentionPatch(kv, i, float(injection.weight), window, previous)
        m.set_model_attn2_replace(patch, *site.key)
    m.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_PRE_RUN, CALLBACK_KEY, window.on_pre_run)
    return m
