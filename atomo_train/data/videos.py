"""Finding the training videos and reading clips from them with PyAV.

A video that cannot be read or is too short is reported (`Skipped`: file and reason) and left out; only a data
source with nothing usable at all is an error (`ConfigError` naming the key).
"""
from __future__ import annotations

import bisect
import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .config import DataConfig

VIDEO_EXTS = (".mp4", ".webm", ".gif", ".mov", ".mkv", ".m4v", ".avi", ".webp")
PIL_EXTS = (".webp",)  # animated WebP (ComfyUI's SaveAnimatedWEBP, atomo_demo): FFmpeg does not decode it
LIST_EXTS = (".csv", ".jsonl")


@dataclass(frozen=True)
class VideoItem:
    path: Path
    caption: str
    name: str  # unique within its source: path relative to the folder / list file, posix


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class VideoError(Exception):
    """Why one video cannot give a clip; becomes a `Skipped` entry, never stops the run."""


@dataclass(frozen=True)
class Clip:
    clip_id: str  # "<video name>#<k>"
    frame_indices: list[int]  # positions in the video's frames (presentation order)
    pixels: torch.Tensor  # float32 [F, 3, H, W] in [0, 1], at the training size


# --------------------------------------------------------------------------------------------- discovery

def discover(path: Path, key: str = "data.path") -> tuple[list[VideoItem], list[Skipped]]:
    """Videos and captions of a folder (same-name .txt, searched recursively, hidden folders left out) or of a
    .csv (columns path,caption) / .jsonl (keys path, caption) list whose relative paths start at the list's folder."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(key, f"'{path}' does not exist; point it at a folder of videos with same-name .txt "
                          f"captions, or at a .csv/.jsonl list with path and caption columns")
    if path.is_dir():
        items, skipped = _from_folder(path, key)
    elif path.suffix.lower() in LIST_EXTS:
        items, skipped = _from_list(path, key)
    else:
        raise ConfigError(key, f"'{path}' is neither a folder nor a .csv/.jsonl list")
    if not items and not skipped:
        raise ConfigError(key, f"the list '{path}' names no video; add one entry per video (path and caption)")
    if not items:
        reasons = "; ".join(str(s) for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        raise ConfigError(key, f"no usable video with a caption in '{path}' ({reasons}); each video needs a "
                          f"caption (a same-name .txt file, or the caption column of the list)")
    return items, skipped


def _from_folder(root: Path, key: str) -> tuple[list[VideoItem], list[Skipped]]:
    try:
        videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(root).parts))
    except OSError as e:
        raise ConfigError(key, f"cannot list the folder '{root}' ({type(e).__name__} on '{e.filename}'); check its "
                          "permissions") from None
    if not videos:
        raise ConfigError(key, f"the folder '{root}' holds no video ({', '.join(VIDEO_EXTS)}); put the training "
                          f"videos there, each with a same-name .txt caption")
    items, skipped = [], []
    for v in videos:
        caption_file = v.with_suffix(".txt")
        if not caption_file.is_file():
            skipped.append(Skipped(v, f"no caption file {caption_file.name}"))
            continue
        try:
            caption = caption_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            skipped.append(Skipped(v, f"caption file {caption_file.name} unreadable ({e})"))
            continue
        items.append(VideoItem(v, caption, v.relative_to(root).as_posix()))
    if not items and all(s.reason.startswith("no caption file") for s in skipped):
        raise ConfigError(key, f"none of the {len(videos)} videos in '{root}' has a caption: add a same-name .txt "
                          f"file beside each video (e.g. {videos[0].with_suffix('.txt').name})")
    return items, skipped


def _from_list(list_file: Path, key: str) -> tuple[list[VideoItem], list[Skipped]]:
    rows: list[tuple[int, dict]] = []
    skipped: list[Skipped] = []
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(key, f"cannot read the list '{list_file}' ({type(e).__name__}); check its permissions "
                          "and that it is a UTF-8 text file") from e
    if list_file.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"path", "caption"} <= {f.strip() for f in reader.fieldnames}:
            raise ConfigError(key, f"the CSV '{list_file}' needs a header row with the columns path,caption "
                              f"(found {reader.fieldnames})")
        rows = [(i + 2, {k.strip(): v for k, v in r.items() if k}) for i, r in enumerate(reader)]
    else:
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                skipped.append(Skipped(list_file, f"line {i} is not JSON ({e.msg})"))
                continue
            if not isinstance(obj, dict):
                skipped.append(Skipped(list_file, f"line {i} is not a JSON object"))
                continue
            rows.append((i, obj))
    items, seen = [], {}
    for line_no, r in rows:
        p, caption = r.get("path"), r.get("caption")
        if not isinstance(p, str) or not p.strip():
            skipped.append(Skipped(list_file, f"line {line_no}: no path"))
            continue
        video = Path(p.strip()).expanduser()
        video = video if video.is_absolute() else list_file.parent / video
        if not isinstance(caption, str):
            skipped.append(Skipped(video, f"line {line_no} of {list_file.name}: no caption"))
            continue
        if not video.is_file():
            skipped.append(Skipped(video, f"line {line_no} of {list_file.name}: file not found"))
            continue
        try:
            name = video.resolve().relative_to(list_file.parent.resolve()).as_posix()
        except ValueError:
            name = video.resolve().as_posix()
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # the same video listed again (another caption): its own entry
            name = f"{name}@{seen[name]}"
        items.append(VideoItem(video, caption.strip(), name))
    return items, skipped


# --------------------------------------------------------------------------------------------- reading

def frame_times(path: Path) -> list[float]:
    """Presentation times (seconds from the first frame) of every frame, from the container, without decoding."""
    if Path(path).suffix.lower() in PIL_EXTS:
        return _pil_frame_times(path)
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoError("no video stream")
            s = c.streams.video[0]
            pts = sorted(p.pts for p in c.demux(s) if p.pts is not None and p.size)
            tb = s.time_base
            if len(pts) < 1 or tb is None:
                raise VideoError("no timestamped video frames")
    except VideoError:
        raise
    except Exception as e:  # PyAV raises many error types (InvalidDataError, OSError, ...)
        raise VideoError(f"unreadable ({type(e).__name__}: {e})") from e
    return [float((p - pts[0]) * tb) for p in pts]


def read_frames(path: Path, indices: list[int]) -> torch.Tensor:
    """uint8 [len(indices), H, W, 3] RGB; indices may repeat (fps above the source rate). Decodes up to the last."""
    if Path(path).suffix.lower() in PIL_EXTS:
        return _pil_read_frames(path, indices)
    import av

    wanted = set(indices)
    last = max(indices)
    got: dict[int, torch.Tensor] = {}
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for i, frame in enumerate(c.decode(s)):
                if i in wanted:
                    got[i] = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                if i >= last:
                    break
    except Exception as e:
        if len(got) < len(wanted):
            raise VideoError(f"decoding failed after {len(got)} of {len(wanted)} frames "
                             f"({type(e).__name__}: {e})") from e
    if len(got) < len(wanted):
        raise VideoError(f"only {len(got)} of the {len(wanted)} needed frames could be decoded "
                         f"(the last needed is frame {last})")
    shapes = {t.shape for t in got.values()}
    if len(shapes) > 1:
        raise VideoError(f"frame size changes inside the clip ({sorted(shapes)})")
    return torch.stack([got[i] for i in indices])


def _pil_frame_times(path: Path) -> list[float]:
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as im:
            durations = [fr.info.get("duration", 0) or 0 for fr in ImageSequence.Iterator(im)]
    except Exception as e:
        raise VideoError(f"unreadable ({type(e).__name__}: {e})") from e
    if not durations:
        raise VideoError("no frames")
    times, t = [], 0.0
    for d in durations:
        times.append(t / 1000.0)
        t += d if d > 0 else 1000.0 / 8  # a frame without a duration: 8 fps, ComfyUI's default
    return times


def _pil_read_frames(path: Path, indices: list[int]) -> torch.Tensor:
    import numpy as np
    from PIL import Image, ImageSequence

    wanted, got = set(indices), {}
    try:
        with Image.open(path) as im:
            for i, fr in enumerate(ImageSequence.Iterator(im)):
                if i in wanted:
                    got[i] = torch.from_numpy(np.asarray(fr.convert("RGB")).copy())
                if i >= max(indices):
                    break
    except Exception as e:
        raise VideoError(f"decoding failed after {len(got)} of {len(wanted)} frames ({type(e).__name__}: {e})") from e
    if len(got) < len(wanted):
        raise VideoError(f"only {len(got)} of the {len(wanted)} needed frames could be decoded")
    return torch.stack([got[i] for i in indices])


# --------------------------------------------------------------------------------------------- sampling

def _rng(cfg: DataConfig, *parts) -> torch.Generator:
    """Generator seeded by the data seed and what is drawn (video name, clip number), so a video's clips stay the
    same when other videos are added or removed."""
    h = hashlib.sha256(repr((cfg.seed,) + parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))


def plan_clips(times: list[float], cfg: DataConfig, name: str) -> list[list[int]]:
    """Frame indices of each clip of one video (stride: every n-th frame; fps: the frame shown at each tick).

    start "fixed": clips evenly spaced from the first frame (one clip starts at frame 0); "random": each start
    drawn uniformly (seeded by data.seed and the video name). Raises VideoError when the video is too short.
    """
    n, f = len(times), cfg.frames
    if cfg.fps is None:
        span = (f - 1) * cfg.stride + 1
        if n < span:
            raise VideoError(f"too short: {n} frames, a clip needs {span} (frames={f}, stride={cfg.stride})")
        starts_ok = list(range(n - span + 1))
    else:
        need = (f - 1) / cfg.fps
        slack = 0.5 * (times[-1] / (n - 1)) if n > 1 else 0.0  # the last frame still shows half a frame later
        starts_ok = [i for i in range(n) if times[i] + need <= times[-1] + slack]
        if not starts_ok:
            raise VideoError(f"too short: {times[-1]:.2f} s between first and last frame, a clip needs "
                             f"{need:.2f} s (frames={f}, fps={cfg.fps:g})")
    count = cfg.clips_per_video
    if cfg.start == "fixed":
        m = len(starts_ok) - 1
        picks = sorted({round(k * m / (count - 1)) for k in range(count)}) if count > 1 else [0]
    else:
        picks = [int(torch.randint(len(starts_ok), (), generator=_rng(cfg, name, k, "start"))) for k in range(count)]
    clips = []
    for p in picks:
        s = starts_ok[p]
        if cfg.fps is None:
            clips.append([s + j * cfg.stride for j in range(f)])
        else:
            clips.append([_nearest(times, times[s] + j / cfg.fps) for j in range(f)])
    return clips


def _nearest(times: list[float], t: float) -> int:
    """The frame whose timestamp is nearest to t (the earlier on ties): container timestamps are rounded, e.g.
    GIF's centiseconds, so "last frame at or before t" would pick the wrong frame."""
    i = bisect.bisect_left(times, t)
    if i == 0:
        return 0
    if i == len(times):
        return len(times) - 1
    return i if times[i] - t < t - times[i - 1] else i - 1


def resize_crop(frames: torch.Tensor, size: tuple[int, int], crop: str,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [F,H,W,3] -> float32 [F,3,h,w] in [0,1]: scaled (antialiased) so it covers (w, h), then cropped at
    the centre or at one random offset for the whole clip."""
    w, h = size
    H, W = frames.shape[1:3]
    scale = max(w / W, h / H)
    nh, nw = max(h, math.ceil(H * scale - 1e-6)), max(w, math.ceil(W * scale - 1e-6))
    if crop == "random":
        top = int(torch.randint(nh - h + 1, (), generator=generator))
        left = int(torch.randint(nw - w + 1, (), generator=generator))
    else:
        top, left = (nh - h) // 2, (nw - w) // 2
    out = torch.empty(frames.shape[0], 3, h, w)
    for i, fr in enumerate(frames):  # one frame at a time: a 4K clip as float would take gigabytes
        x = fr.permute(2, 0, 1)[None].float().div_(255.0)
        if (nh, nw) != (H, W):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
        out[i] = x[0, :, top:top + h, left:left + w]
    return out


def load_clips(item: VideoItem, cfg: DataConfig) -> list[Clip]:
    """Every clip of one video at the training size, from one decoding pass. Raises VideoError (the reason to
    report) when it can't."""
    times = frame_times(item.path)
    plans = plan_clips(times, cfg, item.name)
    union = sorted({i for p in plans for i in p})
    raw = read_frames(item.path, union)
    pos = {i: n for n, i in enumerate(union)}
    clips = []
    for k, indices in enumerate(plans):
        pixels = resize_crop(raw[[pos[i] for i in indices]], cfg.size, cfg.crop, _rng(cfg, item.name, k, "crop"))
        clips.append(Clip(f"{item.name}#{k}", indices, pixels))
    return clips
