"""The extra UNet input channels: how a per-frame image latent and mask become `c_concat`.

The conditioning node produces, for F frames, a (scaled) image latent `[F, 4, h, w]` that is zero on frames
not given, and a mask `[F, 1, h, w]` that is 1 on given frames (AtomoVideo's binary frame mask Fm). A weight
file declares the order of its input channels (e.g. `noise:4, mask:1, image:4`) and the mask polarity; this
module lays the two tensors out accordingly. The noisy latent always comes first and is added by the host.
"""
from __future__ import annotations

import torch

def parse_layout(layout) -> tuple[tuple[str, int], ...]:
    """("noise:4", "mask:1", "image:4") -> (("noise", 4), ("mask", 1), ("image", 4)): parse once, build often."""
    out = []
    for part in layout:
        name, _, width = part.partition(":")
        out.append((name, int(width)))
    return tuple(out)


def nearest_given(given: list[bool], frames: int) -> list[int | None]:
    """For each frame of a batch of `frames`-frame videos, the index of the nearest given frame of the same video
    (the earlier one on ties), or None when that video has no given frame."""
    out: list[int | None] = []
    for start in range(0, len(given), frames):
        stop = min(start + frames, len(given))
        idx = [i for i in range(start, stop) if given[i]]
        out += [min(idx, key=lambda i: (abs(i - f), i)) if idx else None for f in range(start, stop)]
    return out


def image_on_every_frame(image: torch.Tensor, frames: int) -> torch.Tensor:
    """Each frame gets the image latent of the nearest given frame (a frame whose latent is not all zero), per
    video of `frames` frames; the earlier one on ties. With one given frame this repeats it on every frame, as PIA
    does (`prepare_masked_latent_cond`). Videos with no given frame stay zero."""
    given = (image.flatten(1).abs().amax(1) > 0).tolist()  # one device sync, not one per frame
    source = [f if s is None else s for f, s in enumerate(nearest_given(given, frames))]
    return image[source]


def build_concat(groups, like: torch.Tensor, image: torch.Tensor | None, mask: torch.Tensor | None,
                 mask_polarity: str = "1=given", image_on_all_frames: bool = False,
                 frames: int | None = None) -> torch.Tensor:
    """Channels after the noisy latent (`groups`: see `parse_layout`) for a batch shaped like `like` [N, 4, h, w].

    Missing `image`/`mask` mean "no frame given": zeros and an all-not-given mask (text-to-video).
    `mask` may carry non-binary values (PIA's per-frame affinity); they pass through unchanged.
    `image_on_all_frames` (PIA): every frame of each `frames`-frame video gets the given image latent.
    """
    n, _, h, w = like.shape
    if image is None:
        image = like.new_zeros(n, 4, h, w)
    if mask is None:
        mask = like.new_zeros(n, 1, h, w)
    image = image.to(like.device, like.dtype)
    mask = mask.to(like.device, like.dtype)
    if image.shape[0] != n or mask.shape[0] != n:
        raise ValueError(f"conditioning for {image.shape[0]} frames, but the batch has {n}")
    if image_on_all_frames:
        image = image_on_every_frame(image, frames or n)
    if mask_polarity == "0=given":
        mask = 1.0 - mask
    parts = []
    for name, width in groups[1:]:
        if name in ("mask", "affinity"):
            parts.append(mask.expand(n, width, h, w))
        elif name == "image":
            parts.append(image)
        else:
            raise ValueError(f"unknown input channel group '{name}' in layout {list(groups)}")
    return torch.cat(parts, dim=1)
