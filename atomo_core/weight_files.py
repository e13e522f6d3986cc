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
    content, metadata = _read(Path(path))
    check_finite_tensors(content, Path(path).name)
    return content, metadata


def check_finite_tensors(obj, name: str, prefix: str = "") -> None:
    """Refuse a file whose tensors hold NaN or infinities: they would turn every video into NaN."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            check_finite_tensors(value, name, f"{prefix}{key}.")
    elif isinstance(obj, torch.Tensor) and obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
        raise WeightFormatError(f"{name}: tensor '{prefix[:-1]}' holds NaN or infinite values (a damaged file, or "
                                "one saved from a diverged training run); download it again from its source, or "
                                "use an earlier checkpoint of the training run")


def _read(path: Path) -> tuple[object, dict]:
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except Exception:  # safetensors raises its own error types for corrupt headers
            raise WeightFormatError(f"{path.name} is not a readable safetensors file (its header or data is cut "
                                    "short or damaged, e.g. by an interrupted download): download it again from "
                                    "its source") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True), {}
    except Exception as e:
        raise WeightFormatError(_unpickling_message(path.name, e)) from None


def _unpickling_message(name: str, error: Exception) -> str:
    """What to do about a pickled file the safe loader refused; never advice to load it unsafely."""
    text = str(error)
    if "GLOBAL" in text or "allowed global" in text or "Unsupported global" in text:  # objects beyond tensors
        return (f"{name} is a pickled file holding Python objects besides tensors; loading it could run code, so "
                "the pack does not. Get the .safetensors version of this file from its source, or convert a file "
                "you trust to .safetensors, and choose that")
    return (f"{name} is neither a safetensors file nor a PyTorch checkpoint the pack can read (damaged, cut short "
            "or not a weight file): download it again from its source, preferably as .safetensors")


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
        raise WeightFormatError(f"{path.name} does not hold a state dict of tensors; choose a weight file (a "
                                "safetensors or checkpoint file of tensors)")
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
