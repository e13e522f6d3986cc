"""Inflating a loaded SD1.5 model with temporal layers, through ModelPatcher extension points only.

- Temporal layers: each UNet block that receives one is replaced by an *object patch* holding a new
  `TimestepEmbedSequential` whose children are the original ones under their original names plus the temporal
  layers under new names (`t<i>` after child i). Original state-dict keys are unchanged, so LoRA and other
  weight patches still find every spatial weight, and `unpatch_model` restores the original blocks.
- The layers run through `forward_timestep_embed_patch`, which hands them the batch and `transformer_options`
  (frame count, host attention backend).
- The widened input layer is a `("diff", pad_weight)` weight patch on `conv_in`; the extra channels come from
  the conditioning through the APPLY_MODEL wrapper of `conditioning.install_concat`.
Nothing here changes the user's model object: everything lives on a clone and is undone on unpatch.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

import comfy.patcher_extension
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

from ..atomo_core.errors import AtomoVideoError
from ..atomo_core.temporal_layers import TemporalLayer
from ..atomo_core.unet_sites import RES, TRANSFORMER, check_sites_fit
from ..atomo_core.weight_format import AtomoVideoMetadata, AtomoVideoWeights
from . import sampling_checks
from .conditioning import KEY, ConcatSpec, frames_in_batch, install_concat

CONV_IN_WEIGHT = "diffusion_model.input_blocks.0.0.weight"


@dataclass(frozen=True)
class Inflation:
    """What `inflate` did to a model; stored as the `atomovideo` attachment for the other nodes."""
    file_name: str
    metadata: AtomoVideoMetadata
    site_count: dict          # kind -> number of inserted layers
    image_proj: dict | None
    concat: ConcatSpec | None  # None: the weights add no input channels


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


# transformer_options key: take the temporal layers' GroupNorm statistics across frames (spatial_groupnorm's
# AnimateDiff-Evolved mode, whose global patch reaches the motion modules' GroupNorms too).
NORM_ACROSS_FRAMES = "atomovideo_temporal_norm_across_frames"


def temporal_layer_handler(layer, x, emb, context, transformer_options, *_):
    """Called as `forward_timestep_embed_patch` handlers are: (layer, x, emb, context, transformer_options,
    output_shape, time_context, num_video_frames, image_only_indicator); the frame count comes from the batch.

    The layers use their own attention for short sequences (torch SDPA on strided heads) rather than the host's
    `optimized_attention`, which is chosen for long spatial sequences (sub-quadratic chunking on the CPU,
    xformers' batch limit on CUDA)."""
    param = next(layer.parameters())
    if param.device != x.device or param.dtype != x.dtype:
        # Object-patched modules can miss the host's load() (partially_load returns early): follow the input.
        layer.to(device=x.device, dtype=x.dtype)
    return layer(x, frames_in_batch(x, transformer_options),
                 norm_across_frames=transformer_options.get(NORM_ACROSS_FRAMES, False))


def _frame_limit_wrapper(max_frames: int, file_name: str, owner: str | None):
    """OUTER_SAMPLE wrapper: the frame limit, and the checks across nodes for any sampler (KSampler too)."""
    def wrapper(executor, noise, *args, **kwargs):
        guider = getattr(executor, "class_obj", None)
        if guider is not None:
            sampling_checks.check_conditioning_fits(getattr(guider, "conds", {}), noise)
            sampling_checks.check_prediction(guider.model_patcher)
        frames = noise.shape[0]
        if frames > max_frames:
            raise AtomoVideoError(
                "weights", f"'{file_name}' supports at most {max_frames} frames, but the latent has {frames}. "
                f"Use at most {max_frames} frames per sampling run, and AtomoVideo Frame Continuation for longer "
                "videos.", node=owner)
        return executor(noise, *args, **kwargs)
    return wrapper


def _insert_layers(patcher, unet, sites, layers) -> None:
    by_block: dict = {}
    for s in sites:
        by_block.setdefault(s.block, []).append(s)
    for block, block_sites in by_block.items():
        seq = unet.get_submodule(block)
        after = {s.after: layers[s.name] for s in block_sites}
        children = []
        for i, (name, child) in enumerate(original_children(seq)):
            children.append((name, child))
            if i in after:
                children.append((f"t{i}", after[i]))
        patcher.add_object_patch(f"diffusion_model.{block}", type(seq)(OrderedDict(children)))
    patcher.set_model_forward_timestep_embed_patch((TemporalLayer, temporal_layer_handler))


def inflate(model, weights: AtomoVideoWeights, file_name: str, affinity_preset: str | None = None,
            owner: str | None = None):
    """A clone of `model` with the temporal layers and input layer of `weights`; `model` is untouched.

    `affinity_preset` (PIA weights): binary frame masks from the conditioning become that preset's per-frame
    affinity (`pia_presets`); masks that already carry affinity values pass unchanged. `owner` names the node
    in the frame-limit error, which is raised later, by whatever node samples."""
    if inflation_of(model) is not None:
        raise AtomoVideoError("model", f"this model already has AtomoVideo temporal layers "
                                       f"('{inflation_of(model).file_name}'); load them only once per model.")
    unet = model.get_model_object("diffusion_model")
    sites = weights.sites()
    problems = check_sites_fit(sites, host_layout(unet))
    if problems:
        raise AtomoVideoError("weights", f"'{file_name}' does not fit this UNet: " + "; ".join(problems[:4]))
    m = model.clone()
    _insert_layers(m, unet, sites, weights.build_layers())
    meta, concat = weights.metadata, None
    if weights.conv_in_extra is not None and meta.in_channels > 4:
        conv_weight = model.model.state_dict()[CONV_IN_WEIGHT]
        delta = torch.zeros(conv_weight.shape[0], meta.in_channels, *conv_weight.shape[2:])
        delta[:, 4:] = weights.conv_in_extra.float()
        m.add_patches({CONV_IN_WEIGHT: ("diff", (delta, {"pad_weight": True}))}, 1.0, 1.0)
        concat = ConcatSpec.from_metadata(meta, affinity_preset)
        install_concat(m, concat, model.get_model_object("latent_format"))
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY,
                           _frame_limit_wrapper(meta.max_frames, file_name, owner))
    counts: dict = {}
    for s in sites:
        counts[s.kind] = counts.get(s.kind, 0) + 1
    m.set_attachments(KEY, Inflation(file_name, meta, counts, weights.image_proj, concat))
    return m
