"""Inflating a loaded SD1.5 model with temporal layers, through ModelPatcher extension points only.

- Temporal layers: each UNet block that receives one is replaced by an *object patch* holding a new
  `TimestepEmbedSequential` whose children are the original ones under their original names plus the temporal
  layers under new names (`t<i>` after child i). Original state-dict keys are unchanged, so LoRA and other
  weight patches still find every spatial weight, and `unpatch_model` restores the original blocks.
- The layers run through `forward_timestep_embed_patch`, which hands them the batch and `transformer_options`
  (frame count, host attention backend).
- The widened input layer is a `("diff", pad_weight)` weight patch on `conv_in`; the extra channels come from
  the conditioning through an APPLY_MODEL wrapper.
Nothing here changes the user's model object: everything lives on a clone and is undone on unpatch.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

import comfy.ldm.modules.attention as host_attention
import comfy.patcher_extension
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

from ..atomo_core.conditioning_layout import build_concat
from ..atomo_core.errors import input_error
from ..atomo_core.pia_presets import frame_mask_to_affinity
from ..atomo_core.temporal_layers import TemporalLayer
from ..atomo_core.unet_sites import RES, TRANSFORMER, check_sites_fit
from ..atomo_core.weight_format import AtomoVideoWeights

KEY = "atomovideo"  # attachment, wrapper and callback key of this pack
CONV_IN_WEIGHT = "diffusion_model.input_blocks.0.0.weight"
IMAGE_COND, MASK_COND = "atomo_image", "atomo_mask"  # model_conds set by the conditioning node


@dataclass
class Inflation:
    """What the loader did to a model; stored as the `atomovideo` attachment for the other nodes."""
    file_name: str
    metadata: object          # AtomoVideoMetadata
    site_count: dict          # kind -> number of inserted layers
    image_proj: dict | None


def inflation_of(model) -> Inflation | None:
    return model.get_attachment(KEY)


def host_layout(unet) -> dict:
    """The UNet's blocks and the kinds of their children, read from the host's module types."""
    def describe(child):
        if isinstance(child, ResBlock):
            return RES, child.out_channels
        if isinstance(child, SpatialTransformer):
            return TRANSFORMER, child.in_channels
        return type(child).__name__, 0

    layout = {}
    for i, block in enumerate(unet.input_blocks):
        layout[f"input_blocks.{i}"] = [describe(c) for _, c in original_children(block)]
    layout["middle_block"] = [describe(c) for _, c in original_children(unet.middle_block)]
    for i, block in enumerate(unet.output_blocks):
        layout[f"output_blocks.{i}"] = [describe(c) for _, c in original_children(block)]
    return layout


def original_children(block) -> list:
    """(name, module) of a block's own children, without temporal layers an applied clone may have added.

    Object patches stay applied after sampling until another clone loads, so the live UNet can hold them.
    """
    return [(n, c) for n, c in block._modules.items() if not isinstance(c, TemporalLayer)]


def frames_in_batch(x: torch.Tensor, transformer_options: dict) -> int:
    """Frames per video in this UNet call: the batch holds one F-frame chunk per cond/uncond entry."""
    chunks = len(transformer_options.get("cond_or_uncond") or [0])
    if x.shape[0] % chunks:
        raise RuntimeError(f"AtomoVideo: batch of {x.shape[0]} does not split into {chunks} videos")
    return x.shape[0] // chunks


def temporal_layer_handler(layer, x, emb, context, transformer_options, output_shape, time_context,
                           num_video_frames, image_only_indicator):
    param = next(layer.parameters())
    if param.device != x.device or param.dtype != x.dtype:
        # Object-patched modules can miss the host's load() (partially_load returns early): follow the input.
        layer.to(device=x.device, dtype=x.dtype)
    return layer(x, frames_in_batch(x, transformer_options), attention=host_attention.optimized_attention)


def _get_attr(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _concat_wrapper(layout, polarity, latent_format, image_on_all_frames=False, affinity_preset=None):
    def wrapper(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        image = kwargs.pop(IMAGE_COND, None)
        mask = kwargs.pop(MASK_COND, None)
        if c_concat is None:
            if image is not None:
                image = latent_format.process_in(image.to(x.device, x.dtype))
            frames = frames_in_batch(x, transformer_options) if image_on_all_frames or affinity_preset else None
            if affinity_preset and mask is not None:  # PIA: a binary frame mask becomes the preset's affinity
                mask = frame_mask_to_affinity(mask, frames, affinity_preset)
            c_concat = build_concat(layout, x, image, mask, polarity, image_on_all_frames, frames)
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    return wrapper


def _frame_limit_wrapper(max_frames: int, file_name: str):
    def wrapper(executor, noise, *args, **kwargs):
        frames = noise.shape[0]
        if frames > max_frames:
            raise input_error(
                "AtomoVideoLoader", "weights",
                f"'{file_name}' supports at most {max_frames} frames, but the latent has {frames}. "
                f"Use at most {max_frames} frames per sampling run, and AtomoVideo Frame Continuation for longer "
                "videos.")
        return executor(noise, *args, **kwargs)
    return wrapper


def inflate(model, weights: AtomoVideoWeights, file_name: str, node: str = "AtomoVideoLoader",
            affinity_preset: str | None = None):
    """A clone of `model` with the temporal layers and input layer of `weights`; `model` is untouched.

    `affinity_preset` (PIA weights): binary frame masks from the conditioning become that preset's per-frame
    affinity (`pia_presets`); masks that already carry affinity values pass unchanged."""
    if inflation_of(model) is not None:
        raise input_error(node, "model", f"this model already has AtomoVideo temporal layers "
                                         f"('{inflation_of(model).file_name}'); load them only once per model.")
    unet = model.get_model_object("diffusion_model")
    layout = host_layout(unet)
    sites = weights.sites()
    problems = check_sites_fit(sites, layout)
    if problems:
        raise input_error(node, "weights", f"'{file_name}' does not fit this UNet: " + "; ".join(problems[:4]))
    layers = weights.build_layers()

    m = model.clone()
    by_block: dict = {}
    for s in sites:
        by_block.setdefault(s.block, []).append(s)
    for block, block_sites in by_block.items():
        seq = _get_attr(unet, block)
        after = {s.after: layers[s.name] for s in block_sites}
        children = []
        for i, (name, child) in enumerate(original_children(seq)):
            children.append((name, child))
            if i in after:
                children.append((f"t{i}", after[i]))
        m.add_object_patch(f"diffusion_model.{block}", type(seq)(OrderedDict(children)))
    m.set_model_forward_timestep_embed_patch((TemporalLayer, temporal_layer_handler))

    meta = weights.metadata
    if weights.conv_in_extra is not None and meta.in_channels > 4:
        conv_weight = model.model.state_dict()[CONV_IN_WEIGHT]
        delta = torch.zeros(conv_weight.shape[0], meta.in_channels, *conv_weight.shape[2:])
        delta[:, 4:] = weights.conv_in_extra.float()
        m.add_patches({CONV_IN_WEIGHT: ("diff", (delta, {"pad_weight": True}))}, 1.0, 1.0)
        latent_format = model.get_model_object("latent_format")
        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, KEY,
                               _concat_wrapper(meta.channel_layout, meta.mask_polarity, latent_format,
                                               getattr(meta, "image_on_all_frames", False), affinity_preset))
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY,
                           _frame_limit_wrapper(meta.max_frames, file_name))
    counts = {}
    for s in sites:
        counts[s.kind] = counts.get(s.kind, 0) + 1
    m.set_attachments(KEY, Inflation(file_name, meta, counts, weights.image_proj))
    return m
