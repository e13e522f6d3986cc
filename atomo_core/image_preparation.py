"""Preparing the input images of the image-latent conditioning (plain PyTorch, no host).

Images are ComfyUI IMAGE tensors `[N, H, W, C]` with values in 0..1.
- Channels: RGB is used as is; RGBA becomes RGB by dropping alpha (the colour values are kept as stored, as
  ComfyUI's own image nodes do; LoadImage already returns alpha as a separate MASK); greyscale is repeated.
- Size: width and height must be multiples of 8 (the VAE downsamples by 8). Other sizes are refused, never
  snapped silently; the message names the nearest valid sizes.
- Resize modes: `crop` scales the image to cover the target and cuts the overflow evenly from both sides (centre
  crop, no borders); `pad` scales it to fit inside the target and fills the rest evenly with black (whole image
  kept); `stretch` scales width and height independently. Scaling is bicubic with antialiasing, values clamped
  to 0..1 afterwards (bicubic overshoot).
- Frame indices: comma-separated integers and inclusive ranges, e.g. `0`, `0,8,15`, `0-3`, `0-3, 12`; a negative
  number counts from the end (`-1` is the last frame). Duplicates, empty entries (`0,,1`, `0,`) and out-of-range
  indices are refused, quoting the text.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from .errors import AtomoVideoError, in_field

CROP, PAD, STRETCH = "crop", "pad", "stretch"
RESIZE_MODES = (CROP, PAD, STRETCH)
MULTIPLE = 8


def check_size(value: int, what: str) -> None:
    if value < MULTIPLE or value % MULTIPLE:
        lower = max(MULTIPLE, value // MULTIPLE * MULTIPLE)
        upper = lower + MULTIPLE if value > lower else lower
        options = f"{lower} or {upper}" if lower != upper else f"{lower}"
        raise AtomoVideoError(None, f"{what} {value} is not a multiple of {MULTIPLE} (the VAE works on 8x8 blocks); "
                              f"it is refused, not snapped: use {options}")


def check_image(image, field: str) -> torch.Tensor:
    """An IMAGE input as [N, H, W, 3] (RGBA and greyscale converted); errors are input `field`'s."""
    if not isinstance(image, torch.Tensor):
        raise AtomoVideoError(field, f"expected an IMAGE tensor, got {type(image).__name__}")
    with in_field(field):
        return to_rgb(image)


def to_rgb(image: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] from RGB, RGBA (alpha dropped) or greyscale images."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4:
        raise AtomoVideoError(None, f"expected an IMAGE batch [N, H, W, C], got a tensor of shape {list(image.shape)}")
    c = image.shape[-1]
    if c == 3:
        return image
    if c == 4:
        return image[..., :3]
    if c == 1:
        return image.expand(*image.shape[:3], 3)
    raise AtomoVideoError(None, f"images with {c} channels are not supported; use RGB, RGBA or greyscale images")


def resize(image: torch.Tensor, width: int, height: int, mode: str = CROP) -> torch.Tensor:
    """[N, height, width, C] from [N, H, W, C] by `mode` (see the module docstring)."""
    if mode not in RESIZE_MODES:
        raise AtomoVideoError(None, f"unknown resize mode '{mode}'; use one of {', '.join(RESIZE_MODES)}")
    n, h, w, c = image.shape
    if (h, w) == (height, width):
        return image
    x = image.movedim(-1, 1).float()
    if mode == STRETCH:
        out = _scale(x, height, width)
    else:
        scale = max(width / w, height / h) if mode == CROP else min(width / w, height / h)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        if mode == CROP:
            sh, sw = max(sh, height), max(sw, width)
        else:
            sh, sw = min(sh, height), min(sw, width)
        x = _scale(x, sh, sw)
        if mode == CROP:
            top, left = (sh - height) // 2, (sw - width) // 2
            out = x[:, :, top:top + height, left:left + width]
        else:
            top, left = (height - sh) // 2, (width - sw) // 2
            out = x.new_zeros(n, c, height, width)
            out[:, :, top:top + sh, left:left + sw] = x
    return out.movedim(1, -1).to(image.dtype).contiguous()


def _scale(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)


_TOKEN = re.compile(r"^(-?\d+)$|^(\d+)\s*-\s*(\d+)$")


def parse_frame_indices(text: str, frames: int) -> list[int]:
    """Frame indices in the order written (image i goes to the i-th index)."""
    if frames < 1:
        raise AtomoVideoError(None, f"the frame count must be at least 1, got {frames}")
    tokens = [t.strip() for t in str(text).replace(";", ",").split(",")]
    if not any(tokens):
        raise AtomoVideoError(None, "no frame index given; write e.g. '0' (first frame), '0,8,15' or '0-3'")
    out = []
    for tok in tokens:
        if not tok:
            raise AtomoVideoError(None, f"'{text}' has an empty entry (two separators in a row, or one at the start "
                                        "or end); write the indices separated by single commas, e.g. '0,8,15'")
        m = _TOKEN.match(tok)
        if not m:
            raise AtomoVideoError(None, f"'{tok}' in '{text}' is not a frame index; write integers and ranges like "
                                        "'0,8,15' or '0-3'")
        if m.group(1) is not None:
            i = int(m.group(1))
            idx = [i + frames if i < 0 else i]
            if not -frames <= i < frames:
                raise AtomoVideoError(None, f"frame {i} is outside the video of {frames} frames; use 0..{frames - 1}, "
                                      f"or -1..-{frames} to count from the end")
        else:
            a, b = int(m.group(2)), int(m.group(3))
            if a > b:
                raise AtomoVideoError(None, f"range '{tok}' runs backwards; write '{b}-{a}'")
            if b >= frames:
                raise AtomoVideoError(None, f"range '{tok}' goes beyond the video of {frames} frames; use frames "
                                            f"0..{frames - 1}")
            idx = list(range(a, b + 1))
        for i in idx:
            if i in out:
                raise AtomoVideoError(None, f"frame {i} is given twice in '{text}'")
            out.append(i)
    return out


def frame_conditioning(latents: torch.Tensor, indices: list[int], frames: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(image [F, 4, h, w], mask [F, 1, h, w]): latent i at frame indices[i] with mask 1, zeros elsewhere."""
    if latents.shape[0] != len(indices):
        raise AtomoVideoError(None, f"{latents.shape[0]} latents for {len(indices)} frame indices")
    _, c, h, w = latents.shape
    image = latents.new_zeros(frames, c, h, w)
    mask = latents.new_zeros(frames, 1, h, w)
    for latent, i in zip(latents, indices):
        image[i] = latent
        mask[i] = 1.0
    return image, mask


def chunks(n: int, size: int):
    """(start, stop) pairs covering 0..n in steps of `size`."""
    for start in range(0, n, max(1, size)):
        yield start, min(n, start + max(1, size))
