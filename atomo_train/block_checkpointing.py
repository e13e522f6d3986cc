"""Gradient checkpointing of the frozen UNet blocks (ResBlocks, SpatialTransformers), through host extension points.

`forward_timestep_embed` runs ResBlocks and SpatialTransformers itself and consults
`transformer_options["patches"]["forward_timestep_embed_patch"]` only for other layers. So the blocks that hold
them are object-patched (undone by `unpatch_model`) with copies in which each such layer sits in a
`CheckpointedBlock`, a plain module the host hands to `checkpointed_block_handler`; that handler runs the layer
under `torch.utils.checkpoint` (non-reentrant) while gradients are on, and directly otherwise.

A SpatialTransformer gets a shallow copy of `transformer_options`: the recomputation during backward then sees
this block's own keys ("block", the tokens of the image injection...), not the values the forward pass left.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.utils.checkpoint
from torch import nn

from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

CHECKPOINTED = (ResBlock, SpatialTransformer)


class CheckpointedBlock(nn.Module):
    """One frozen ResBlock or SpatialTransformer, run under checkpointing by `checkpointed_block_handler`."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x, cond, transformer_options=None):
        """cond: the timestep embedding (ResBlock) or the context (SpatialTransformer)."""
        if isinstance(self.block, SpatialTransformer):
            return self.block(x, cond, transformer_options)
        return self.block(x, cond)


def checkpointed_block_handler(layer, x, emb, context, transformer_options, *_):
    """A `forward_timestep_embed_patch` handler, doing what `forward_timestep_embed` does for the wrapped layer."""
    transformer = isinstance(layer.block, SpatialTransformer)
    cond = context if transformer else emb
    opts = dict(transformer_options) if transformer else None
    if torch.is_grad_enabled():
        x = torch.utils.checkpoint.checkpoint(layer, x, cond, opts, use_reentrant=False)
    else:
        x = layer(x, cond, opts)
    if transformer and "transformer_index" in transformer_options:
        transformer_options["transformer_index"] += 1
    return x


def block_keys(unet) -> list[str]:
    return ([f"input_blocks.{i}" for i in range(len(unet.input_blocks))] + ["middle_block"]
            + [f"output_blocks.{i}" for i in range(len(unet.output_blocks))])


def wrap_blocks(patcher, unet) -> int:
    """Object-patch every block holding a ResBlock or SpatialTransformer (on top of the inflation's patches, whose
    temporal layers stay the same objects); returns how many layers were wrapped."""
    wrapped = 0
    for block in block_keys(unet):
        key = f"diffusion_model.{block}"
        seq = patcher.object_patches.get(key, unet.get_submodule(block))
        if not any(isinstance(c, CHECKPOINTED) for c in seq.children()):
            continue
        children = []
        for name, child in seq._modules.items():
            if isinstance(child, CHECKPOINTED):
                child = CheckpointedBlock(child)
                wrapped += 1
            children.append((name, child))
        patcher.add_object_patch(key, type(seq)(OrderedDict(children)))
    return wrapped
