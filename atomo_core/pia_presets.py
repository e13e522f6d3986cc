"""PIA's motion presets: the per-frame affinity values of its input channel 4.

PIA (open-mmlab/PIA, `animatediff/utils/util.py`) conditions every frame on the same image latent and on one
"affinity" scalar per frame, filled over H x W: 1.0 on the conditioning frame, smaller values the further a frame
is from it (smaller values allow more motion). The tables below are PIA's `RANGE_LIST`; a preset's list is
padded with its last value to the frame count and read by distance to the conditioning frame
(`prepare_mask_coef_by_statistics`). The paper's scripts choose the preset with `--magnitude m` (index m),
`--loop` (m + 3) and `--style_transfer` (-m - 1).
"""
from __future__ import annotations

import torch

from .conditioning_layout import nearest_given

# preset name -> values by distance from the conditioning frame (PIA's RANGE_LIST index in the comment)
PRESETS = {
    "animation (small motion)": [1.0, 0.9, 0.85, 0.85, 0.85, 0.8],                                     # 0
    "animation (moderate motion)": [1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75],                             # 1
    "animation (large motion)": [1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5],     # 2
    "loop (small motion)": [1.0, 0.9, 0.85, 0.85, 0.85, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.85, 0.85,
                            0.9, 1.0],                                                                 # 3
    "loop (moderate motion)": [1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75, 0.75, 0.75, 0.75, 0.75, 0.78, 0.79,
                               0.8, 0.8, 1.0],                                                         # 4
    "loop (large motion)": [1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.8,
                            1.0],                                                                      # 5
    "style transfer (large motion)": [0.5, 0.2],                                                       # 6 / -3
    "style transfer (moderate motion)": [0.5, 0.4, 0.4, 0.4, 0.35, 0.35, 0.3, 0.25, 0.2],              # 7 / -2
    "style transfer (small motion)": [0.5, 0.4, 0.4, 0.4, 0.35, 0.3],                                  # 8 / -1
}
PRESET_NAMES = tuple(PRESETS)
DEFAULT_PRESET = "animation (moderate motion)"


def affinity_values(preset: str, frames: int, cond_frame: int = 0) -> list[float]:
    """PIA's per-frame affinity for `frames` frames with the image on frame `cond_frame`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown PIA preset '{preset}'; expected one of {list(PRESETS)}")
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if not 0 <= cond_frame < frames:
        raise ValueError(f"conditioning frame {cond_frame} is outside 0..{frames - 1}")
    coef = _coefficients(preset, frames)
    return [coef[abs(f - cond_frame)] for f in range(frames)]


def _coefficients(preset: str, frames: int) -> list[float]:
    """The preset's values by distance, padded with its last value to at least `frames` entries."""
    coef = list(PRESETS[preset])
    return coef + [coef[-1]] * max(0, frames - len(coef))


def affinity_mask(preset: str, frames: int, height: int, width: int, cond_frame: int = 0) -> torch.Tensor:
    """`[frames, 1, height, width]`: each frame's affinity filled over the latent (the `atomo_mask` input)."""
    values = torch.tensor(affinity_values(preset, frames, cond_frame), dtype=torch.float32)
    return values.view(frames, 1, 1, 1).expand(frames, 1, height, width).clone()


def frame_mask_to_affinity(mask: torch.Tensor, frames: int, preset: str) -> torch.Tensor:
    """A binary frame mask (`[N, 1, h, w]`, 1 on given frames, N = videos x `frames`) as PIA affinity: each frame
    gets the preset's value for its distance to the nearest given frame. Videos without a given frame get zeros.
    A mask that is not binary already carries affinity values and is returned unchanged."""
    if not bool(((mask == 0) | (mask == 1)).all()):
        return mask
    given = (mask.flatten(1) == 1).all(1).tolist()
    coef = _coefficients(preset, frames)
    values = [0.0 if g is None else coef[abs(f - g)] for f, g in enumerate(nearest_given(given, frames))]
    return torch.tensor(values, dtype=mask.dtype, device=mask.device).view(-1, 1, 1, 1).expand_as(mask).clone()
