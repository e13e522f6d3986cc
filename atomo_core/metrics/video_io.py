"""Reading videos and images from files for the command: PyAV for mp4/webm/mov/mkv, Pillow for gif/webp/apng.

Frames come back as float32 [F, H, W, 3] in [0, 1], the layout ComfyUI's IMAGE uses, so a file scored here and
the same frames scored by the node give the same numbers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PILLOW_ANIMATED = {".gif", ".webp", ".png", ".apng"}
IMAGE_FILES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def _to_float(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack(frames).astype(np.float32) / 255.0


def _pillow_frames(path: Path, max_frames: int | None) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    out = []
    with Image.open(path) as im:
        for fr in ImageSequence.Iterator(im):
            out.append(np.asarray(fr.convert("RGB")))
            if max_frames and len(out) >= max_frames:
                break
    return out


def _pyav_frames(path: Path, max_frames: int | None) -> list[np.ndarray]:
    import av

    out = []
    with av.open(str(path)) as container:
        for fr in container.decode(video=0):
            out.append(fr.to_ndarray(format="rgb24"))
            if max_frames and len(out) >= max_frames:
                break
    return out


def read_video(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """All frames of a video file, or of a folder of image files in name order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_FILES)
        frames = [read_image(p) for p in files[:max_frames or None]]
        if not frames:
            raise ValueError(f"{path} holds no image files ({', '.join(sorted(IMAGE_FILES))})")
        return np.stack(frames)
    frames = (_pillow_frames(path, max_frames) if path.suffix.lower() in PILLOW_ANIMATED
              else _pyav_frames(path, max_frames))
    if not frames:
        raise ValueError(f"{path}: no video frames could be decoded")
    return _to_float(frames)


def read_image(path: str | Path) -> np.ndarray:
    """One image as float32 [H, W, 3] in [0, 1] (first frame of an animated file; alpha dropped)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.float32) / 255.0
