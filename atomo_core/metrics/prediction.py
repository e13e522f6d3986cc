"""Frame prediction baselines and summary statistics for measuring a video model against ground truth.

A model that is given the first k frames of a clip should predict the rest better than the two trivial
predictors: copying the last given frame (no motion), and extrapolating each pixel linearly from the last two
given frames (constant per-pixel change). Both are computed from the given frames only.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import AtomoVideoError


def _given(frames: np.ndarray, need: int) -> np.ndarray:
    a = np.asarray(frames, dtype=np.float64)
    if a.ndim != 4 or a.shape[0] < need:
        raise AtomoVideoError("frames", f"expected at least {need} given frames [k, H, W, C], got shape "
                                        f"{list(a.shape)}")
    return a


def copy_last(frames: np.ndarray, n: int) -> np.ndarray:
    """The last given frame repeated n times: [n, H, W, C]."""
    a = _given(frames, 1)
    return np.repeat(a[-1:], int(n), axis=0)


def linear_extrapolation(frames: np.ndarray, n: int) -> np.ndarray:
    """Frame k-1+i predicted as last + i (last - previous), i = 1..n, clipped to [0, 1]: [n, H, W, C]."""
    a = _given(frames, 2)
    last, step = a[-1], a[-1] - a[-2]
    steps = np.arange(1, int(n) + 1, dtype=np.float64).reshape(-1, 1, 1, 1)
    return np.clip(last[None] + steps * step[None], 0.0, 1.0)


def t_quantile(level: float, dof: int) -> float:
    """Two-sided Student-t quantile (scipy, which scikit-image already depends on)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2.0, dof))


def mean_ci(values, level: float = 0.95) -> dict:
    """Mean and `level` confidence interval of the mean (Student t over the values, e.g. one per test clip).

    With one value the interval is unknown (None)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": 1}
    half = t_quantile(level, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": int(x.size)}


def laplacian_variance(frames: np.ndarray) -> list[float]:
    """Sharpness per frame: variance of the 3x3 Laplacian of 8-bit-scaled luma (higher = sharper)."""
    import cv2

    out = []
    for f in np.asarray(frames, dtype=np.float32):
        y = (f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114) * 255.0
        out.append(float(cv2.Laplacian(y, cv2.CV_32F, ksize=1).var()))
    return out


def lab_mean_distance(frames: np.ndarray, reference: np.ndarray) -> list[float]:
    """Colour drift per frame: CIELAB distance between the frame's mean L*a*b* and the reference image's."""
    from .colour import per_frame_lab

    mean, _ = per_frame_lab(np.asarray(frames, dtype=np.float32))
    ref, _ = per_frame_lab(np.asarray(reference, dtype=np.float32)[None])
    return np.linalg.norm(mean - ref[0], axis=-1).tolist()
