"""Image consistency: how close frames stay to the input image (AIGCBench's MSE / SSIM / PSNR).

SSIM is scikit-image's (7x7 uniform window, data range 1, averaged over RGB), so numbers match anyone who
uses the same library call.
"""
from __future__ import annotations

import numpy as np

PSNR_CAP_DB = 100.0  # identical images have infinite PSNR; JSON has no infinity, so it is capped here


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over pixels and channels, values in [0, 1]."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr_from_mse(m: float) -> float:
    """PSNR in dB for data range 1, capped at PSNR_CAP_DB."""
    if m <= 10.0 ** (-PSNR_CAP_DB / 10.0):
        return PSNR_CAP_DB
    return float(10.0 * np.log10(1.0 / m))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two [H, W, 3] images in [0, 1] (skimage.metrics.structural_similarity)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0))


def per_frame_to_image(video: np.ndarray, image: np.ndarray) -> dict[str, list[float]]:
    """MSE, PSNR and SSIM of every frame against the input image."""
    mses = [mse(f, image) for f in video]
    return {
        "mse_to_input": mses,
        "psnr_to_input": [psnr_from_mse(m) for m in mses],
        "ssim_to_input": [ssim(f, image) for f in video],
    }


def adjacent_ssim(video: np.ndarray) -> list[float]:
    """SSIM of each frame to the next: a CLIP-free temporal-consistency signal."""
    return [ssim(video[i], video[i + 1]) for i in range(len(video) - 1)]
