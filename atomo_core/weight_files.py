"""Reading weight files safely and telling which format they are.

Only safetensors and `torch.load(weights_only=True)` are used, so a file can never run code on load.
Every known format is converted to `AtomoVideoWeights`, the one structure the host glue understands.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from . import animatediff_format
from .animatediff_format import ACCEPTED as PUBLIC_ACCEPTED
from .errors import WeightFormatError
from .weight_format import AtomoVideoWeights, atomovideo_from_state_dict, is_atomovideo

ACCEPTED = "AtomoVideo (.safetensors with 'atomovideo' metadata); " + PUBLIC_ACCEPTED


def read_file(path: str | Path) -> tuple[object, dict]:
    """(content, safetensors metadata) of a `.safetensors` file (a dict of tensors) or a pickled checkpoint (what
    `torch.load(weights_only=True)` returns): the only way the pack opens a weight file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise WeightFormatError(f"{path.name} is not a readable safetensors file ({e})") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True), {}
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightFormatError(f"{path.name} could not be loaded safely (torch.load(weights_only=True): "
                                f"{first})") from None


def read_state_dict(path: str | Path) -> tuple[dict, dict]:
    """(tensors, safetensors metadata) of a `.safetensors` or pickled checkpoint, wrappers removed."""
    path = Path(path)
    obj, metadata = read_file(path)
    if path.suffix == ".safetensors":
        return obj, metadata
    for wrapper in ("state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightFormatError(f"{path.name} does not hold a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}, metadata


def describe(state_dict: dict) -> str:
    """A short account of a state dict for error messages."""
    keys = sorted(state_dict)
    sample = ", ".join(keys[:3])
    return f"{len(keys)} tensors (e.g. {sample})" if keys else "no tensors"


def load_temporal_weights(path: str | Path, layout: dict | None = None) -> AtomoVideoWeights:
    """Any supported temporal-layer file as `AtomoVideoWeights`; unknown files get a clear error.

    `layout` (see `unet_sites`) is the UNet the weights will go into; public motion modules are placed in it
    the way AnimateDiff places them (standard SD1.5 when None). AtomoVideo files carry their own sites.
    """
    state_dict, metadata = read_state_dict(path)
    if is_atomovideo(metadata):
        return atomovideo_from_state_dict(state_dict, metadata)
    if animatediff_format.is_motion_module(state_dict) or any(
            k.startswith(("image_proj.", "ip_adapter.", "controlnet_cond_embedding.")) for k in state_dict):
        try:
            return animatediff_format.load_public(state_dict, layout)
        except WeightFormatError as e:
            raise WeightFormatError(f"{Path(path).name}: {e}") from None
    raise WeightFormatError(
        f"{Path(path).name} is not a format this pack knows: found {describe(state_dict)}. Accepted: {ACCEPTED}.")
