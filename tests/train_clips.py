"""Small synthetic videos for the trainer's data tests, written with PyAV: a bright square moving right over a
dark background by `speed` pixels per frame, so frame i can be recognised from the square's position."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def square_frames(frames: int, width: int = 64, height: int = 48, speed: int = 2, box: int = 8) -> np.ndarray:
    """uint8 [F, H, W, 3]; the square's left edge is at x = speed * i in frame i."""
    out = np.full((frames, height, width, 3), 20, np.uint8)
    top = (height - box) // 2
    for i in range(frames):
        x = (speed * i) % (width - box)
        out[i, top:top + box, x:x + box] = (230, 200, 40)
    return out


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    """mp4 (H.264, near-lossless), webm (VP9), mov or gif, by the file's suffix."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    codec, pix, opts = {".mp4": ("libx264", "yuv444p", {"crf": "0"}), ".mov": ("libx264", "yuv444p", {"crf": "0"}),
                        ".webm": ("libvpx-vp9", "yuv444p", {"lossless": "1"}), ".gif": ("gif", "rgb8", {})}[ext]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps, options=opts)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format=pix)):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_clip(folder: Path, name: str, frames: int = 12, caption: str | None = "a yellow square moves right",
               ext: str = ".mp4", fps: int = 8, **kw) -> Path:
    """`<folder>/<name><ext>` and, unless caption is None, `<name>.txt`."""
    video = write_video(Path(folder) / f"{name}{ext}", square_frames(frames, **kw), fps=fps)
    if caption is not None:
        video.with_suffix(".txt").write_text(caption, encoding="utf-8")
    return video


def square_x(frame: np.ndarray) -> float:
    """Left edge of the bright square in a uint8/float HWC or CHW frame (mean column of bright pixels)."""
    a = np.asarray(frame, dtype=np.float32)
    if a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
    if a.max() <= 1.0:
        a = a * 255
    cols = np.nonzero((a[..., 0] > 120).any(0))[0]
    return float(cols.min()) if cols.size else float("nan")
