"""One call that scores a video against its input image, shared by the node and the command.

Both go through `evaluate`, so the same frames give the same numbers wherever they are measured.
"""
from __future__ import annotations

import json
import math

import numpy as np

from ..errors import AtomoVideoError
from . import colour, fidelity, motion, temporal

REPORT_VERSION = 1
MIN_SIDE = 16  # SSIM's 7x7 window and DIS's patches need some room


def as_frames(x, name: str, *, what: str) -> np.ndarray:
    """A torch/numpy image batch [N, H, W, C] (or one image [H, W, C]) as float32 RGB numpy in [0, 1]."""
    if x is None:
        raise AtomoVideoError(name, f"no {what} was given.")
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        a = a[None]
    if a.ndim != 4:
        raise AtomoVideoError(name, f"expected an image batch [frames, height, width, channels], got shape "
                                      f"{list(a.shape)}.")
    if a.shape[0] == 0:
        raise AtomoVideoError(name, f"the {what} is empty (0 frames).")
    if a.shape[-1] == 4:
        a = a[..., :3]  # RGBA: colour metrics are about the visible RGB
    elif a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.shape[-1] != 3:
        raise AtomoVideoError(name, f"expected RGB images (3 channels), got {a.shape[-1]} channels.")
    if min(a.shape[1:3]) < MIN_SIDE:
        raise AtomoVideoError(name, f"frames are {a.shape[2]}x{a.shape[1]} px; at least {MIN_SIDE}x{MIN_SIDE} "
                                      "is needed.")
    if not np.isfinite(a).all():
        raise AtomoVideoError(name, f"the {what} contains NaN or infinite values.")
    return np.clip(a, 0.0, 1.0)


def check_inputs(video, image, video_input: str = "video", image_input: str = "image"):
    """Validated (video [F, H, W, 3], image [H, W, 3]) numpy arrays; errors name the input."""
    v = as_frames(video, video_input, what="video")
    if v.shape[0] < 2:
        raise AtomoVideoError(video_input, "got a single frame; temporal consistency and motion need at least "
                                             "2 frames. Connect the whole decoded video batch.")
    im = as_frames(image, image_input, what="input image")
    if im.shape[0] != 1:
        raise AtomoVideoError(image_input, f"got {im.shape[0]} images; give the one input image the video was "
                                             "generated from (pick it with ImageFromBatch).")
    if im.shape[1:3] != v.shape[1:3]:
        raise AtomoVideoError(image_input, f"the image is {im.shape[2]}x{im.shape[1]} px but the video is "
                                             f"{v.shape[2]}x{v.shape[1]} px; resize the image to the video size "
                                             "(e.g. ImageScale, or --fit-image in the command) so frames can be "
                                             "compared pixel by pixel.")
    return v, im[0]


def fit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (and centre-crop to keep aspect) an image [H, W, 3] to the video size, as packs resize inputs."""
    import cv2

    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    s = max(height / h, width / w)
    nh, nw = max(height, round(h * s)), max(width, round(w * s))
    r = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    y, x = (nh - height) // 2, (nw - width) // 2
    return np.clip(r[y:y + height, x:x + width], 0.0, 1.0)


def _mean(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return float(np.mean(xs)) if xs else None


def evaluate(video: np.ndarray, image: np.ndarray, *, frame_embeds=None, image_embed=None,
             embed: temporal.Embedder | None = None) -> dict:
    """The full report for a checked video [F, H, W, 3] and input image [H, W, 3] (see `check_inputs`).

    CLIP similarities are included when embeddings (or an embedding callable) are given, else they are None.
    """
    if embed is not None and frame_embeds is None:
        frame_embeds, image_embed = temporal.embed_all(embed, video, image)
    fid = fidelity.per_frame_to_image(video, image)
    adj = fidelity.adjacent_ssim(video)
    mot = motion.motion_and_warp(video)
    col = colour.drift(video, image)
    clip = (temporal.clip_similarities(frame_embeds, image_embed) if frame_embeds is not None
            else {"clip_to_input": None, "clip_adjacent": None})
    f, h, w = video.shape[:3]
    summary = {
        "first_frame_mse": fid["mse_to_input"][0],
        "first_frame_psnr": fid["psnr_to_input"][0],
        "first_frame_ssim": fid["ssim_to_input"][0],
        "ssim_to_input_mean": _mean(fid["ssim_to_input"]),
        "ssim_to_input_last": fid["ssim_to_input"][-1],
        "clip_to_input_mean": _mean(clip["clip_to_input"]) if clip["clip_to_input"] else None,
        "adjacent_ssim_mean": _mean(adj),
        "clip_adjacent_mean": _mean(clip["clip_adjacent"]) if clip["clip_adjacent"] else None,
        "warp_error_mean": _mean(mot["warp_error"]),
        "flow_magnitude_mean": _mean(mot["flow_magnitude"]),
        "flow_square_mean": _mean(mot["flow_square_mean"]),
        **col["summary"],
    }
    return {
        "version": REPORT_VERSION,
        "frames": int(f), "height": int(h), "width": int(w),
        "method": {"ssim": "skimage.metrics.structural_similarity, 7x7 uniform window, data_range 1, RGB mean",
                   "flow": motion.FLOW_METHOD, "colour_space": colour.COLOUR_SPACE,
                   "clip": "cosine similarity of CLIP image embeddings" if frame_embeds is not None else None,
                   "psnr_cap_db": fidelity.PSNR_CAP_DB},
        "summary": summary,
        "per_frame": {**fid, "clip_to_input": clip["clip_to_input"], **col["per_frame"]},
        "per_pair": {"adjacent_ssim": adj, "clip_adjacent": clip["clip_adjacent"], **mot},
        "input": col["input"],
    }


def _clean(o):
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def to_json(report, indent: int | None = 2) -> str:
    """Strict JSON (NaN, e.g. a warp error with no trackable pixel, becomes null)."""
    return json.dumps(_clean(report), indent=indent, allow_nan=False)


SUMMARY_ROWS = [
    ("first_frame_mse", "first-frame MSE", "{:.5f}", "lower = frame 0 closer to input"),
    ("first_frame_psnr", "first-frame PSNR dB", "{:.2f}", "higher = closer"),
    ("first_frame_ssim", "first-frame SSIM", "{:.4f}", "1 = identical"),
    ("ssim_to_input_mean", "SSIM to input, mean", "{:.4f}", "image consistency"),
    ("clip_to_input_mean", "CLIP to input, mean", "{:.4f}", "image consistency (semantic)"),
    ("adjacent_ssim_mean", "adjacent-frame SSIM", "{:.4f}", "temporal consistency"),
    ("clip_adjacent_mean", "adjacent-frame CLIP", "{:.4f}", "temporal consistency (semantic)"),
    ("warp_error_mean", "flow warp error", "{:.2e}", "lower = smoother"),
    ("flow_magnitude_mean", "flow magnitude px", "{:.3f}", "motion"),
    ("flow_square_mean", "flow-square-mean px^2", "{:.3f}", "motion intensity (AIGCBench)"),
    ("lightness_drift_max", "max |dL*| vs frame 0", "{:.2f}", "brightness drift"),
    ("lightness_frame0_minus_input", "L* frame 0 - input", "{:+.2f}", "first-frame brightness jump"),
    ("chroma_shift_max", "max colour shift vs frame 0", "{:.2f}", "a*b* distance"),
    ("contrast_ratio_last", "contrast last/first", "{:.3f}", "std L* ratio"),
]


def summary_text(report: dict) -> str:
    """Human-readable summary of a report, one metric a line."""
    s = report["summary"]
    lines = [f"{report['frames']} frames, {report['width']}x{report['height']} px"]
    for key, label, fmt, note in SUMMARY_ROWS:
        v = s.get(key)
        val = "n/a (no CLIP)" if v is None and key.startswith("clip") else (
            "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
        lines.append(f"{label:<28} {val:>12}   {note}")
    return "\n".join(lines)
