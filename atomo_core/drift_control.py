"""Colour and brightness drift control for chained segments (plain PyTorch, no host).

Each continuation run starts from the last frames of the previous one, so a small shift in brightness, contrast
or colour per run compounds over a long video (users' most reported failure of extend workflows). This module
matches each new segment to a reference (the input image, a given video, or the first segment) by per-channel
mean and standard deviation in CIELAB: L* carries brightness and contrast, a*/b* colour and saturation, so a
brightness correction does not tint the image and a colour correction does not change lightness, as matching
in RGB would.

Statistics are taken over all kept frames of a segment jointly (the mean over all their pixels, the std as the
within-frame contrast pooled over them), giving one affine map per segment and channel.
Per-frame matching would flatten what should change over time (a light turning on, a dark object entering) and
makes colour flicker from frame to frame; one map per segment keeps the differences between its frames, i.e.
its motion and lighting changes, and removes only the segment's overall offset. The cost: a change of the whole
scene that lasts a segment (a pan to the sky) is pulled towards the reference too; lower `strength` for such
videos. The frames a run reproduces from its context are left out of its statistics: they are copies of frames
already in the video. Drift that grows inside a run is removed on average, but a seam then steps back by about
one run's drift (a per-frame ramp of the map would fix that at the price of flattening real changes).

Where it is applied (both on by default):
- `apply_to_context`: the previous segment's map is applied to the frames given to the next run. The model then
  continues from reference-coloured frames, so a run's drift no longer adds up over runs; this is what stops the
  compounding. Alone, the video keeps the sampled frames as they are (one run's drift stays visible).
- `apply_to_output`: the map is applied to the segment's frames in the video, removing the drift the run itself
  added. Alone, the model keeps continuing from its own drifted frames, so the raw chain still compounds and the
  correction has to undo ever larger shifts (clipped highlights or shadows cannot be restored).
With both on, the context frames are exactly the corrected frames of the video.

`strength` 0 or `enabled=False` returns the input tensor itself, values untouched; in between, the map is
blended linearly with the identity. Values leave Lab through sRGB clamped to 0..1 (IMAGE range).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .errors import AtomoVideoError

# sRGB (D65) primaries to CIE XYZ and the D65 2-degree white point, as in skimage.color.
SRGB_TO_XYZ = ((0.412453, 0.357580, 0.180423),
               (0.212671, 0.715160, 0.072169),
               (0.019334, 0.119193, 0.950227))
# Its inverse (numpy.linalg.inv of the above, as skimage's rgb_from_xyz).
XYZ_TO_SRGB = ((3.2404813432005266, -1.5371515162713183, -0.4985363261688878),
               (-0.9692549499965682, 1.8759900014898907, 0.04155592655829284),
               (0.055646639135177166, -0.20404133836651123, 1.0573110696453443))
WHITE_D65 = (0.95047, 1.0, 1.08883)


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """CIELAB (L* 0..100) of sRGB values in 0..1, channels last."""
    x = rgb.to(_work_dtype(rgb))
    m = torch.tensor(SRGB_TO_XYZ, dtype=x.dtype, device=x.device)
    white = torch.tensor(WHITE_D65, dtype=x.dtype, device=x.device)
    linear = torch.where(x > 0.04045, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = (linear @ m.T) / white
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0.008856) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-1)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-1)


def lab_to_srgb(lab: torch.Tensor) -> torch.Tensor:
    """sRGB in 0..1 of CIELAB values (out-of-gamut colours clamped, negative Z clipped, as skimage does)."""
    x = lab.to(_work_dtype(lab))
    m_inv = torch.tensor(XYZ_TO_SRGB, dtype=x.dtype, device=x.device)
    white = torch.tensor(WHITE_D65, dtype=x.dtype, device=x.device)
    L, a, b = x.unbind(-1)
    fy = (L + 16.0) / 116.0
    f = torch.stack((a / 500.0 + fy, fy, (fy - b / 200.0).clamp_min(0.0)), dim=-1)
    xyz = torch.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787) * white
    linear = xyz @ m_inv.T
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308) ** (1 / 2.4) - 0.055,
                      linear * 12.92)
    return rgb.clamp(0.0, 1.0)


class LabStats(NamedTuple):
    mean: torch.Tensor  # [3]: L*, a*, b* over all pixels of all frames
    std: torch.Tensor   # [3]: within-frame std, pooled over frames


def lab_stats(images: torch.Tensor) -> LabStats:
    """Per-channel statistics of IMAGE [F,H,W,3] (or one [H,W,3]).

    The std is the spatial contrast within frames, pooled over frames (root of the mean per-frame variance), not
    the std over all frames at once: a brightness change over time (a fade, a light turning on) would inflate the
    latter and the match would then flatten that change; a single reference image has no such term either."""
    if images.shape[-1] != 3:
        raise ValueError(f"colour statistics need RGB images (last dimension 3), got shape {tuple(images.shape)}")
    lab = srgb_to_lab(images).reshape(-1 if images.ndim > 3 else 1, images.shape[-3] * images.shape[-2], 3)
    return LabStats(lab.mean((0, 1)), lab.var(1, unbiased=False).mean(0).sqrt())


@dataclass(frozen=True)
class DriftControl:
    """Settings; `max_gain` bounds the contrast/saturation change so a near-flat segment (a fade) is not blown
    up to the reference's contrast."""
    enabled: bool = True
    strength: float = 1.0
    apply_to_context: bool = True
    apply_to_output: bool = True
    max_gain: float = 2.0

    def __post_init__(self):
        if not 0.0 <= float(self.strength) <= 1.0:
            raise AtomoVideoError("drift_strength", f"{self.strength} is outside 0..1 (0 = off, 1 = full "
                              "match to the reference)")
        if float(self.max_gain) < 1.0:
            raise ValueError(f"max_gain {self.max_gain} must be at least 1")

    @property
    def active(self) -> bool:
        return bool(self.enabled) and float(self.strength) > 0 and (self.apply_to_context or self.apply_to_output)


class LabMap(NamedTuple):
    """lab' = gain * lab + shift per channel; already blended with the strength."""
    gain: torch.Tensor
    shift: torch.Tensor


def segment_map(frames: torch.Tensor, reference: LabStats | torch.Tensor, settings: DriftControl) -> LabMap | None:
    """The map taking `frames`' joint Lab statistics to the reference's; None (identity) when inactive."""
    if not settings.active:
        return None
    ref = reference if isinstance(reference, LabStats) else lab_stats(reference)
    own = lab_stats(frames)
    ref_mean, ref_std = (t.to(own.mean) for t in ref)
    gain = (ref_std / own.std.clamp_min(1e-6)).clamp(1.0 / settings.max_gain, settings.max_gain)
    s = float(settings.strength)
    return LabMap(1.0 + s * (gain - 1.0), s * (ref_mean - gain * own.mean))


def apply_map(frames: torch.Tensor, lab_map: LabMap | None) -> torch.Tensor:
    """`frames` through the map; with None the very same tensor comes back."""
    if lab_map is None:
        return frames
    lab = srgb_to_lab(frames)
    out = lab_to_srgb(lab * lab_map.gain.to(lab) + lab_map.shift.to(lab))
    return out.to(frames.dtype)


def match_color(frames: torch.Tensor, reference: LabStats | torch.Tensor, strength: float = 1.0,
                enabled: bool = True, max_gain: float = 2.0) -> torch.Tensor:
    """One segment (or any IMAGE batch) matched jointly to `reference`; strength 0 / disabled: the input."""
    settings = DriftControl(enabled=enabled, strength=strength, max_gain=max_gain)
    return apply_map(frames, segment_map(frames, reference, settings))
