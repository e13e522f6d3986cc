"""Synthetic public motion-module files (exact key sets and shapes of the released SD1.5 files, random values)
and loading ComfyUI-AnimateDiff-Evolved into the test host for the equivalence test.

Key layout (notes on weight formats, section 1): `{down_blocks.i|up_blocks.i|mid_block}.motion_modules.j.
temporal_transformer.<param>`, 28 tensors per module (26 without the positional encodings); down_blocks 0-3 x
modules 0-1 (320, 640, 1280, 1280 channels), up_blocks 0-3 x modules 0-2 (1280, 1280, 640, 320), mid_block
(1280) in v2 and AnimateLCM. PIA adds `conv_in.weight` [320, 9, 3, 3] and `conv_in.bias` [320].
"""
from __future__ import annotations

import asyncio
import math
import os
import sys
from pathlib import Path

import torch

from pack import core

DOWN_CHANNELS = (320, 640, 1280, 1280)
UP_CHANNELS = (1280, 1280, 640, 320)
MID_CHANNELS = 1280

# format -> (positional-encoding length or None, has a mid-block module, has PIA's conv_in)
FORMATS = {
    "animatediff_v1": (24, False, False),
    "animatediff_v2": (32, True, False),
    "animatediff_v3": (32, False, False),
    "animatelcm": (None, True, False),
    "pia": (32, False, True),
}
KEY_COUNTS = {"animatediff_v1": 560, "animatediff_v2": 588, "animatediff_v3": 560, "animatelcm": 546, "pia": 562}

# Modules whose blocks the tiny fixture UNet (channel_mult [1, 1], one ResBlock per level) has, all 320 channels.
TINY_MODULES = [("down_blocks.0.motion_modules.0", 320), ("up_blocks.0.motion_modules.0", 320),
                ("up_blocks.0.motion_modules.1", 320), ("up_blocks.0.motion_modules.2", 320),
                ("up_blocks.1.motion_modules.0", 320), ("mid_block.motion_modules.0", 320)]


def module_shapes(channels: int, pe_length: int | None) -> dict:
    """param (after `temporal_transformer.`) -> shape, for one module."""
    c = channels
    shapes = {"norm.weight": (c,), "norm.bias": (c,), "proj_in.weight": (c, c), "proj_in.bias": (c,),
              "proj_out.weight": (c, c), "proj_out.bias": (c,)}
    block = "transformer_blocks.0."
    for i in range(2):
        a = f"{block}attention_blocks.{i}."
        for p in ("to_q", "to_k", "to_v"):
            shapes[f"{a}{p}.weight"] = (c, c)
        shapes[f"{a}to_out.0.weight"] = (c, c)
        shapes[f"{a}to_out.0.bias"] = (c,)
        if pe_length is not None:
            shapes[f"{a}pos_encoder.pe"] = (1, pe_length, c)
        shapes[f"{block}norms.{i}.weight"] = (c,)
        shapes[f"{block}norms.{i}.bias"] = (c,)
    shapes[f"{block}ff.net.0.proj.weight"] = (8 * c, c)
    shapes[f"{block}ff.net.0.proj.bias"] = (8 * c,)
    shapes[f"{block}ff.net.2.weight"] = (c, 4 * c)
    shapes[f"{block}ff.net.2.bias"] = (c,)
    shapes[f"{block}ff_norm.weight"] = (c,)
    shapes[f"{block}ff_norm.bias"] = (c,)
    return shapes


def public_modules(fmt: str) -> list:
    """(module prefix, channels) of the released SD1.5 file of `fmt`."""
    _, mid, _ = FORMATS[fmt]
    mods = [(f"down_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(DOWN_CHANNELS) for j in range(2)]
    mods += [(f"up_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(UP_CHANNELS) for j in range(3)]
    if mid:
        mods.append(("mid_block.motion_modules.0", MID_CHANNELS))
    return mods


def state_dict_shapes(fmt: str, modules: list | None = None) -> dict:
    """key -> shape of a file of `fmt` (the public SD1.5 file when `modules` is None)."""
    pe_length, _, conv_in = FORMATS[fmt]
    shapes = {}
    for prefix, c in (modules if modules is not None else public_modules(fmt)):
        for k, s in module_shapes(c, pe_length).items():
            shapes[f"{prefix}.temporal_transformer.{k}"] = s
    if conv_in:
        shapes["conv_in.weight"] = (320, 9, 3, 3)
        shapes["conv_in.bias"] = (320,)
    return shapes


def synthetic_state_dict(fmt: str, modules: list | None = None, *, device="meta", seed: int = 0,
                         zero_outputs: bool = False) -> dict:
    """A file of `fmt` with random values (on `meta`: shapes only). Linear weights ~ N(0, 1/fan_in), biases and
    norm parameters near their identity values, the positional encodings AnimateDiff's sinusoid. With
    `zero_outputs` every `proj_out` is zero (the modules are then the identity)."""
    sinusoidal_encoding = core("temporal_layers", "sinusoidal_encoding")

    shapes = state_dict_shapes(fmt, modules)
    if str(device) == "meta":
        return {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k in sorted(shapes):
        s = shapes[k]
        if k.endswith("pos_encoder.pe"):
            v = sinusoidal_encoding(s[1], s[2])
        elif k.endswith("bias"):
            v = torch.randn(s, generator=g) * 0.02
        elif len(s) == 1:  # norm weights
            v = 1.0 + torch.randn(s, generator=g) * 0.05
        else:
            fan_in = math.prod(s[1:])
            v = torch.randn(s, generator=g) / math.sqrt(fan_in)
        if zero_outputs and ".proj_out." in k:
            v = torch.zeros(s)
        sd[k] = v
    return sd


# -- AnimateDiff-Evolved in the test host --------------------------------------------------------------------
ADE_ENV = "ATOMO_ADE_PATH"


def ade_path() -> Path | None:
    """ATOMO_ADE_PATH, else the archive in ../shared/peers unpacked once into the cache (host_archive.py)."""
    from host_archive import unpacked

    p = os.environ.get(ADE_ENV) or unpacked("peer")
    if p and (Path(p) / "animatediff" / "motion_module_ad.py").is_file():
        return Path(p).resolve()
    return None


def load_ade(comfy) -> str | None:
    """Loads AnimateDiff-Evolved into the booted host like a custom node; returns why not, or None.

    Its module registers `animatediff_models` under `folder_paths.models_dir` and creates the folder there: the
    host's models_dir is pointed at the test's private models folder meanwhile, so the ComfyUI checkout is untouched.
    """
    path = ade_path()
    if path is None:
        return (f"AnimateDiff-Evolved not found: set {ADE_ENV} to a checkout of ComfyUI-AnimateDiff-Evolved that "
                "supports this ComfyUI (e.g. 1.5.6, commit 90fb133), or put its archive in ../shared/peers/")
    import folder_paths
    import nodes

    if "ADE_AnimateDiffLoaderGen1" in nodes.NODE_CLASS_MAPPINGS:
        return None
    saved = folder_paths.models_dir
    folder_paths.models_dir = str(comfy.models_dir)
    try:
        ok = asyncio.run(nodes.load_custom_node(str(path)))
    finally:
        folder_paths.models_dir = saved
    if not ok or "ADE_AnimateDiffLoaderGen1" not in nodes.NODE_CLASS_MAPPINGS:
        return f"AnimateDiff-Evolved at {path} failed to load into this ComfyUI (see the log)"
    return None


def ade_module(name: str):
    """A submodule of the loaded AnimateDiff-Evolved, e.g. `animatediff.sampling`."""
    root = str(ade_path()).replace(".", "_x_")
    return sys.modules[f"{root}.{name}"]
