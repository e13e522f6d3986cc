"""Checks of the host values nodes receive (IMAGE tensors, video sizes, batch sizes), written once.

Each raises `AtomoVideoError` naming the input; the node layer adds the node's name.
"""
from __future__ import annotations

import dataclasses

import torch

from ..atomo_core import image_preparation as prep
from ..atomo_core.image_preparation import check_image  # noqa: F401  (one IMAGE check for every node)
from ..atomo_core.errors import AtomoVideoError, in_field

MAX_SIZE = 8192        # largest width or height a node accepts
MAX_FRAMES = 4096      # frames of one sampling run's latent
MAX_TOTAL_FRAMES = 100000  # frames of a long video


def check_video_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a video to make: multiples of 8, at most MAX_SIZE."""
    for name, value in (("width", width), ("height", height)):
        with in_field(name):
            prep.check_size(int(value), name)
        if value > MAX_SIZE:
            raise AtomoVideoError(name, f"{name} {value} is larger than {MAX_SIZE}")
    return int(width), int(height)


def check_image_size(images: torch.Tensor, field: str) -> None:
    """Frames whose sides are multiples of 8 (given frames are not resized)."""
    for name, value in (("width", images.shape[2]), ("height", images.shape[1])):
        with in_field(field, "resize the frames first"):
            prep.check_size(int(value), f"the frames' {name}")


def split_settings(values: dict, *kinds: type) -> tuple:
    """One frozen settings object per dataclass in `kinds`, from a node's inputs by field name (each input goes to
    the first kind that has it; missing optional inputs keep the dataclass defaults)."""
    rest, out = dict(values), []
    for kind in kinds:
        names = {f.name for f in dataclasses.fields(kind)}
        out.append(kind(**{n: rest.pop(n) for n in list(rest) if n in names}))
    if rest:
        raise TypeError(f"inputs that no settings object takes: {sorted(rest)}")
    return tuple(out)


def check_batch(value, field: str, what: str) -> int:
    """A frames-at-a-time setting: an int of at least 1."""
    if not isinstance(value, int) or value < 1:
        raise AtomoVideoError(field, f"{value}; {what} at least 1 frame at a time")
    return value


def check_resize_mode(mode: str, field: str = "resize_mode") -> str:
    if mode not in prep.RESIZE_MODES:
        raise AtomoVideoError(field, f"unknown mode '{mode}'; use one of {', '.join(prep.RESIZE_MODES)}")
    return mode
