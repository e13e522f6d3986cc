"""Colour and brightness drift in CIELAB (D65): L* is perceived lightness, a*/b* the colour axes.

Users report "lighter first frame", "darker after frame 1", "colour shifts"; per-frame L*a*b* means and standard
deviations turn those into numbers (mean = brightness / cast, std of L* = contrast).
"""
from __future__ import annotations

import numpy as np

COLOUR_SPACE = "CIELAB (D65, skimage.color.rgb2lab, sRGB input)"


def per_frame_lab(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mean and std of L*, a*, b*: two [N, 3] arrays for images [N, H, W, 3] in [0, 1]."""
    from skimage.color import rgb2lab

    lab = rgb2lab(np.clip(images, 0.0, 1.0).astype(np.float32), channel_axis=-1).astype(np.float64)
    flat = lab.reshape(lab.shape[0], -1, 3)
    return flat.mean(axis=1), flat.std(axis=1)


def drift(video: np.ndarray, image: np.ndarray) -> dict:
    """Per-frame L*a*b* statistics and their change relative to frame 0 and to the input image."""
    mean, std = per_frame_lab(video)
    in_mean, in_std = per_frame_lab(image[None])
    in_mean, in_std = in_mean[0], in_std[0]
    d0 = mean - mean[0]
    din = mean - in_mean
    return {
        "per_frame": {
            "lab_mean": mean.tolist(),
            "lab_std": std.tolist(),
            "lab_mean_minus_frame0": d0.tolist(),
            "lab_mean_minus_input": din.tolist(),
            "lab_std_minus_frame0": (std - std[0]).tolist(),
            "lab_std_minus_input": (std - in_std).tolist(),
        },
        "input": {"lab_mean": in_mean.tolist(), "lab_std": in_std.tolist()},
        "summary": {
            "lightness_drift_max": float(np.max(np.abs(d0[:, 0]))),
            "lightness_drift_last": float(d0[-1, 0]),
            "lightness_frame0_minus_input": float(din[0, 0]),
            "lightness_vs_input_max": float(np.max(np.abs(din[:, 0]))),
            "chroma_shift_max": float(np.max(np.hypot(d0[:, 1], d0[:, 2]))),
            "chroma_frame0_minus_input": float(np.hypot(din[0, 1], din[0, 2])),
            "contrast_ratio_last": float(std[-1, 0] / max(std[0, 0], 1e-6)),
        },
    }
