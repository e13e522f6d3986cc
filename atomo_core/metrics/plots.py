"""Line plots of a report drawn with Pillow (no plotting dependency), sized to read on the ComfyUI canvas.

Four stacked panels, 512 px wide: SSIM (and CLIP) to the input, adjacent-frame consistency, optical-flow
magnitude, and L* lightness with the input's as a dashed reference.
"""
from __future__ import annotations

import math

import numpy as np

WIDTH = 512
PANEL_H = 200
BG, FG, GRID = (255, 255, 255), (20, 20, 20), (225, 225, 225)
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 2.5, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 100 or v == 0:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.1f}".rstrip("0").rstrip(".") if a < 10 else f"{v:.0f}"
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _panel(draw, top: int, title: str, series: list[tuple[str, list[float], list[int]]], *,
           ylabel: str, ref: tuple[str, float] | None = None, fixed: tuple[float, float] | None = None,
           n_frames: int):
    """One line plot: series are (label, values, frame indices); ref is a dashed horizontal line."""
    f_title, f_small = _font(15), _font(12)
    left, right, ptop, pbot = 52, WIDTH - 10, top + 26, top + PANEL_H - 32
    draw.text((8, top + 5), f"{title}  [{ylabel}]", fill=FG, font=f_title)
    vals = [v for _, ys, _ in series for v in ys if v is not None and math.isfinite(v)]
    if ref is not None:
        vals.append(ref[1])
    if fixed is not None:
        lo, hi = fixed
        if vals:
            lo, hi = min(lo, min(vals)), max(hi, max(vals))
    elif vals:
        lo, hi = min(vals), max(vals)
    else:
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-6:
        pad = max(abs(hi) * 0.05, 0.05)
        lo, hi = lo - pad, hi + pad
    else:
        pad = (hi - lo) * 0.08
        lo, hi = lo - pad, hi + pad
    x_max = max(n_frames - 1, 1)

    def px(x):
        return left + (right - left) * x / x_max

    def py(y):
        return pbot - (pbot - ptop) * (y - lo) / (hi - lo)

    for t in _nice_ticks(lo, hi):
        y = py(t)
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.text((left - 4, y), _fmt(t), fill=FG, font=f_small, anchor="rm")
    xstep = max(1, math.ceil(x_max / 10))
    for x in range(0, x_max + 1, xstep):
        draw.line([(px(x), pbot), (px(x), pbot + 3)], fill=FG)
        draw.text((px(x), pbot + 4), str(x), fill=FG, font=f_small, anchor="mt")
    draw.rectangle([left, ptop, right, pbot], outline=FG)
    draw.text((right, pbot + 17), "frame", fill=FG, font=f_small, anchor="rt")
    if ref is not None:
        y = py(ref[1])
        for x0 in range(left, right, 10):
            draw.line([(x0, y), (min(x0 + 5, right), y)], fill=(90, 90, 90), width=2)
    legend = [(label, COLOURS[i % len(COLOURS)]) for i, (label, _, _) in enumerate(series)]
    for i, (label, ys, xs) in enumerate(series):
        pts = [(px(x), py(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        colour = COLOURS[i % len(COLOURS)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for p in pts:
            draw.ellipse([p[0] - 2.5, p[1] - 2.5, p[0] + 2.5, p[1] + 2.5], fill=colour)
    if ref is not None:
        legend.append((ref[0], (90, 90, 90)))
    # legend under the axis, so it never hides data
    lx, ly = 8, pbot + 17
    for label, colour in legend:
        draw.line([(lx, ly + 7), (lx + 16, ly + 7)], fill=colour, width=3)
        draw.text((lx + 20, ly), label, fill=FG, font=f_small)
        lx += 20 + draw.textlength(label, font=f_small) + 14


def plot_report(report: dict) -> np.ndarray:
    """The plot image as float32 [H, W, 3] in [0, 1] (ComfyUI IMAGE layout without the batch axis)."""
    from PIL import Image, ImageDraw

    pf, pp, s = report["per_frame"], report["per_pair"], report["summary"]
    n = report["frames"]
    frames, pairs = list(range(n)), list(range(1, n))  # a pair (i-1, i) is drawn at frame i
    img = Image.new("RGB", (WIDTH, PANEL_H * 4), BG)
    d = ImageDraw.Draw(img)

    fid = [("SSIM to input", pf["ssim_to_input"], frames)]
    if pf.get("clip_to_input"):
        fid.append(("CLIP to input", pf["clip_to_input"], frames))
    _panel(d, 0, f"Fidelity: frame-0 SSIM {s['first_frame_ssim']:.3f}", fid,
           ylabel="similarity", fixed=(0.0, 1.0), n_frames=n)

    tmp = [("adjacent SSIM", pp["adjacent_ssim"], pairs)]
    if pp.get("clip_adjacent"):
        tmp.append(("adjacent CLIP", pp["clip_adjacent"], pairs))
    we = s.get("warp_error_mean")
    we_txt = f"{we:.2e}" if we is not None and math.isfinite(we) else "n/a"
    _panel(d, PANEL_H, f"Temporal: warp error {we_txt}", tmp,
           ylabel="similarity", fixed=(0.0, 1.0), n_frames=n)

    _panel(d, 2 * PANEL_H, f"Motion: flow-square-mean {s['flow_square_mean']:.2f} px^2",
           [("mean |flow|", pp["flow_magnitude"], pairs)], ylabel="pixels", fixed=(0.0, 0.0), n_frames=n)

    lab = pf["lab_mean"]
    _panel(d, 3 * PANEL_H, f"Brightness: max drift {s['lightness_drift_max']:.2f} L*",
           [("L* mean", [v[0] for v in lab], frames)], ylabel="L*, 0-100",
           ref=("input L*", report["input"]["lab_mean"][0]), n_frames=n)
    return np.asarray(img, dtype=np.float32) / 255.0


def contact_sheet(videos: list, columns: int | None = None, gap: int = 0) -> np.ndarray:
    """Every frame of `videos` ([F, H, W, 3] arrays of one dtype) in a grid: one block of rows per video,
    `columns` frames a row (all of a video's frames when None), `gap` rows between blocks; empty cells and
    gaps are white (255 for integer frames, 1.0 for float)."""
    dtype = np.asarray(videos[0]).dtype
    white = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    blocks = []
    for video in videos:
        frames = np.asarray(video)
        n, h, w, c = frames.shape
        cols = columns or n
        rows = -(-n // cols)
        block = np.full((rows * h, cols * w, c), white, dtype=dtype)
        for i, f in enumerate(frames):
            block[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = f
        blocks.append(block)
    width = max(b.shape[1] for b in blocks)
    parts = []
    for i, b in enumerate(blocks):
        if i:
            parts.append(np.full((gap, width, b.shape[2]), white, dtype=dtype))
        parts.append(np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=white))
    return np.concatenate(parts, axis=0)
