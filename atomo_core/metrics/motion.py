"""Motion intensity and flow warp error from OpenCV's DIS optical flow (weight-free, deterministic).

Flow is measured in pixels at the video's own resolution, on 8-bit luma, as AIGCBench measures motion with
flow between adjacent frames; DIS replaces RAFT so no network weights are needed.
"""
from __future__ import annotations

import numpy as np

FLOW_METHOD = "OpenCV DIS optical flow, preset MEDIUM, on 8-bit luma"


def _gray_u8(frame: np.ndarray) -> np.ndarray:
    y = frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114
    return np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)


def _dis():
    import cv2

    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def flow(a: np.ndarray, b: np.ndarray, dis=None) -> np.ndarray:
    """Flow [H, W, 2] (x, y) such that a(p) ~ b(p + flow(p)); frames are [H, W, 3] in [0, 1]."""
    dis = dis or _dis()
    return dis.calc(_gray_u8(a), _gray_u8(b), None)


def _sample(img: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Bilinear sample of img at absolute coordinates where [H, W, 2] (x, y); outside reads the border."""
    import cv2

    return cv2.remap(img, where[..., 0], where[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def warp_error(a: np.ndarray, b: np.ndarray, fw: np.ndarray, bw: np.ndarray) -> tuple[float, float]:
    """Warp error of frame b predicted from frame a (Lai et al. 2018), and the fraction of pixels it covers.

    b is reconstructed by sampling a along the backward flow; pixels that come from outside the frame or fail
    the forward-backward consistency check (occlusions, Sundaram et al. 2010) are left out. The error is the
    mean squared RGB difference in [0, 1] units over the kept pixels.
    """
    h, w = a.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)
    src = grid + bw
    inside = (src[..., 0] >= 0) & (src[..., 0] <= w - 1) & (src[..., 1] >= 0) & (src[..., 1] <= h - 1)
    fw_at = _sample(fw, src)
    round_trip = np.sum((fw_at + bw) ** 2, axis=-1)
    consistent = round_trip < 0.01 * (np.sum(fw_at ** 2, axis=-1) + np.sum(bw ** 2, axis=-1)) + 0.5
    keep = inside & consistent
    if not keep.any():
        return float("nan"), 0.0
    warped = _sample(a.astype(np.float32), src)
    d = (warped - b.astype(np.float32))[keep]
    return float(np.mean(d.astype(np.float64) ** 2)), float(keep.mean())


def motion_and_warp(video: np.ndarray) -> dict[str, list[float]]:
    """Per adjacent pair: mean |flow|, mean |flow|^2 (flow-square-mean), warp error and its coverage."""
    dis = _dis()
    mags, sq, werr, wcov = [], [], [], []
    for i in range(len(video) - 1):
        a, b = video[i], video[i + 1]
        fw = flow(a, b, dis)
        bw = flow(b, a, dis)
        m2 = np.sum(fw.astype(np.float64) ** 2, axis=-1)
        mags.append(float(np.mean(np.sqrt(m2))))
        sq.append(float(np.mean(m2)))
        e, c = warp_error(a, b, fw, bw)
        werr.append(e)
        wcov.append(c)
    return {"flow_magnitude": mags, "flow_square_mean": sq, "warp_error": werr, "warp_valid_fraction": wcov}
