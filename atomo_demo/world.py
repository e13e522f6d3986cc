"""A synthetic video world generated from a seed: the demo model's training data and its ground truth.

Every clip is a pure function of its seed (numpy's PCG64 generator, no global state), so the train, validation and
test splits are lists of seeds and never need to be stored. A clip shows one to three drawn objects (geometric
shapes and 5x7 bitmap digits, no dataset download) on a static coloured or textured background; each object
translates with bounces off the borders, rotates and/or pulses in scale. The caption says what happens, and
`clip_spec`/`object_tracks` give the exact path of every object for metrics.

CLI: ``python -m atomo_demo.world OUT --split train --count 100 [--frames 32 --size 64 --fmt mp4]``.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FPS = 8
SPLITS = ("train", "val", "test")
# Seeds of different splits live in disjoint ranges, so no clip can appear in two splits.
_SPLIT_BASE = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}
_SPLIT_SIZE = 1_000_000_000
FORMATS = ("mp4", "webp", "gif")

COLOURS = {
    "red": (220, 40, 40), "orange": (245, 140, 30), "yellow": (240, 220, 40), "green": (40, 170, 60),
    "cyan": (40, 200, 215), "blue": (40, 80, 225), "purple": (145, 60, 200), "pink": (245, 120, 185),
    "white": (245, 245, 245), "black": (20, 20, 20), "gray": (125, 125, 125), "brown": (125, 80, 40),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "ring", "cross", "digit")
# Shapes whose rotation cannot be seen never get rotation as their only motion.
_ROUND = {"circle", "ring"}
BACKGROUNDS = ("plain", "gradient", "stripes", "checkerboard", "noise")

# 5x7 bitmap digits (rows top to bottom), so moving digits need no dataset.
_DIGITS = {
    0: ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    1: ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    2: ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    3: ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    4: ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    5: ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    6: ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    7: ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    8: ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    9: ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}
_DIGIT_BITS = {d: np.array([[c == "1" for c in row] for row in rows]) for d, rows in _DIGITS.items()}
# Farthest point of each shape from its centre, in radii: keeps a pulsing, rotating object inside the frame.
_EXTENT = {"circle": 1.0, "square": 0.75 * math.sqrt(2), "triangle": 1.0, "diamond": 1.0, "star": 1.0, "ring": 1.0,
           "cross": math.hypot(1.0, 0.3), "digit": math.hypot(5 / 7, 1.0)}


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    digit: int | None
    colour: str
    radius: float  # pixels at scale 1
    pos0: tuple[float, float]  # (x, y) pixels at frame 0, before bouncing
    velocity: tuple[float, float]  # pixels per frame; (0, 0) when the object does not translate
    angle0: float  # radians
    omega: float  # radians per frame, positive = clockwise on screen (y points down)
    scale_amp: float  # relative amplitude of the scale pulse; 0 when the object does not pulse
    scale_period: float  # frames
    scale_phase: float

    @property
    def extent(self) -> float:
        """Largest distance of any drawn pixel from the centre over the whole clip."""
        return self.radius * (1.0 + self.scale_amp) * _EXTENT[self.shape]


@dataclass(frozen=True)
class ClipSpec:
    seed: int
    frames: int
    size: int
    background: str
    bg_colours: tuple[str, str]
    bg_params: tuple[float, ...]
    objects: tuple[ObjectSpec, ...]


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"atomo_demo.world: {name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"atomo_demo.world: {name} must be {rng}, got {value}")
    return int(value)


def _contrasting(rng: np.random.Generator, avoid: list[str], min_dist: float = 140.0) -> str:
    names = [n for n in COLOURS if all(np.linalg.norm(np.subtract(COLOURS[n], COLOURS[a])) >= min_dist for a in avoid)]
    return str(rng.choice(names))


def clip_spec(seed: int, frames: int = 32, size: int = 64) -> ClipSpec:
    """Draws everything random about a clip from its seed; rendering is deterministic from the spec."""
    seed = _check_int("seed", seed, 0)
    frames = _check_int("frames", frames, 2)
    size = _check_int("size", size, 32, 1024)
    rng = np.random.default_rng(seed)
    background = str(rng.choice(BACKGROUNDS))
    bg_a = str(rng.choice(list(COLOURS)))
    bg_b = bg_a if background == "plain" else _contrasting(rng, [bg_a], 90.0)
    bg_params = (float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(6, 16) * size / 64), float(rng.uniform(0, 1)))
    n_obj = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    objects = []
    for _ in range(n_obj):
        shape = str(rng.choice(SHAPES))
        digit = int(rng.integers(0, 10)) if shape == "digit" else None
        colour = _contrasting(rng, [bg_a, bg_b])
        radius = float(rng.uniform(0.10, 0.17) * size) * (1.3 if shape == "digit" else 1.0)  # legible strokes
        translate = rng.random() < 0.8
        rotate = rng.random() < 0.5 and (shape not in _ROUND)
        pulse = rng.random() < 0.35
        if not (translate or rotate or pulse):  # every object moves
            translate = True
        scale_amp = float(rng.uniform(0.2, 0.35)) if pulse else 0.0
        ext = radius * (1.0 + scale_amp) * _EXTENT[shape]
        pos0 = tuple(float(v) for v in rng.uniform(ext, size - ext, 2))
        if translate:
            speed = float(rng.uniform(0.7, 1.6) * size / 64)
            heading = float(rng.uniform(0, 2 * math.pi))
            velocity = (speed * math.cos(heading), speed * math.sin(heading))
        else:
            velocity = (0.0, 0.0)
        omega = float(rng.uniform(0.06, 0.16) * rng.choice([-1, 1])) if rotate else 0.0
        objects.append(ObjectSpec(
            shape=shape, digit=digit, colour=colour, radius=radius, pos0=pos0, velocity=velocity,
            angle0=float(rng.uniform(-0.3, 0.3)), omega=omega, scale_amp=scale_amp,
            scale_period=float(rng.uniform(12, 24)), scale_phase=float(rng.uniform(0, 2 * math.pi))))
    return ClipSpec(seed, frames, size, background, (bg_a, bg_b), bg_params, tuple(objects))


def _bounce(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = max(hi - lo, 1e-6)
    m = np.mod(x - lo, 2 * span)
    return lo + np.where(m <= span, m, 2 * span - m)


def object_tracks(spec: ClipSpec) -> np.ndarray:
    """[objects, frames, 4] array of (centre x, centre y, angle, scale) per frame: the ground-truth motion."""
    t = np.arange(spec.frames, dtype=np.float64)
    out = np.zeros((len(spec.objects), spec.frames, 4))
    for i, o in enumerate(spec.objects):
        lo, hi = o.extent, spec.size - o.extent
        out[i, :, 0] = _bounce(o.pos0[0] + o.velocity[0] * t, lo, hi)
        out[i, :, 1] = _bounce(o.pos0[1] + o.velocity[1] * t, lo, hi)
        out[i, :, 2] = o.angle0 + o.omega * t
        out[i, :, 3] = 1.0 + o.scale_amp * np.sin(2 * math.pi * t / o.scale_period + o.scale_phase)
    return out


def _bounces(spec: ClipSpec, o: ObjectSpec) -> bool:
    t = np.arange(spec.frames, dtype=np.float64)
    lo, hi = o.extent, spec.size - o.extent
    for p, v in zip(o.pos0, o.velocity):
        raw = p + v * t
        if v != 0.0 and (raw.min() < lo or raw.max() > hi):
            return True
    return False


def _background(spec: ClipSpec) -> np.ndarray:
    s = spec.size
    a = np.array(COLOURS[spec.bg_colours[0]], np.float64)
    b = np.array(COLOURS[spec.bg_colours[1]], np.float64)
    angle, period, phase = spec.bg_params
    y, x = np.mgrid[0:s, 0:s].astype(np.float64) + 0.5
    proj = x * math.cos(angle) + y * math.sin(angle)
    if spec.background == "plain":
        w = np.zeros((s, s))
    elif spec.background == "gradient":
        w = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-6)
    elif spec.background == "stripes":
        w = 0.5 + 0.5 * np.sin(2 * math.pi * (proj / period + phase))
    elif spec.background == "checkerboard":
        w = ((np.floor(x / period) + np.floor(y / period)) % 2).astype(np.float64)
    else:  # noise: smooth value noise from a 6x6 grid of the clip's own random values, bilinearly upsampled
        g = np.random.default_rng(spec.seed ^ 0x5EED).random((6, 6))
        gx, gy = x / s * 5, y / s * 5
        x0, y0 = np.clip(np.floor(gx).astype(int), 0, 4), np.clip(np.floor(gy).astype(int), 0, 4)
        fx, fy = gx - x0, gy - y0
        w = (g[y0, x0] * (1 - fx) * (1 - fy) + g[y0, x0 + 1] * fx * (1 - fy)
             + g[y0 + 1, x0] * (1 - fx) * fy + g[y0 + 1, x0 + 1] * fx * fy)
    return a * (1 - w[..., None]) + b * w[..., None]


def _inside(o: ObjectSpec, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shape membership in object coordinates (radius 1, v pointing down)."""
    r = np.hypot(u, v)
    if o.shape == "circle":
        return r <= 1.0
    if o.shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if o.shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if o.shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if o.shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if o.shape == "triangle":  # equilateral, circumradius 1, centroid at the centre, apex up
        inside = np.ones(u.shape, bool)
        for k in range(3):
            a = math.pi / 2 + k * 2 * math.pi / 3  # outward normals of the three edges
            inside &= (u * math.cos(a) + v * math.sin(a)) <= 0.5
        return inside
    if o.shape == "star":  # five points, inner radius 0.45
        theta = np.arctan2(v, u) + math.pi / 2
        tri = np.abs(np.mod(theta * 5 / (2 * math.pi), 1.0) - 0.5) * 2  # 1 at the points, 0 between
        return r <= 0.45 + 0.55 * tri
    bits = _DIGIT_BITS[o.digit]  # 7 rows x 5 columns over v in [-1, 1], u in [-5/7, 5/7]
    col = np.floor((u + 5 / 7) * 3.5).astype(int)
    row = np.floor((v + 1.0) * 3.5).astype(int)
    ok = (col >= 0) & (col < 5) & (row >= 0) & (row < 7)
    return ok & bits[np.clip(row, 0, 6), np.clip(col, 0, 4)]


_SUB = (np.arange(4) + 0.5) / 4  # 4x4 supersampling per pixel for anti-aliased edges and thin star tips


def _coverage(o: ObjectSpec, track: np.ndarray, size: int) -> np.ndarray:
    """Fraction of each pixel covered by the object, computed only inside its bounding box."""
    cx, cy, angle, scale = track
    cov = np.zeros((size, size))
    rad = o.radius * scale
    ext = rad * _EXTENT[o.shape] + 1.0
    x0, x1 = max(int(math.floor(cx - ext)), 0), min(int(math.ceil(cx + ext)), size)
    y0, y1 = max(int(math.floor(cy - ext)), 0), min(int(math.ceil(cy + ext)), size)
    if x1 <= x0 or y1 <= y0:
        return cov
    n = len(_SUB)
    xs = (np.arange(x0, x1)[:, None] + _SUB[None, :]).reshape(-1) - cx  # sample x positions
    ys = (np.arange(y0, y1)[:, None] + _SUB[None, :]).reshape(-1) - cy
    py, px = np.meshgrid(ys, xs, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    # rotate the sample points by -angle into the object's frame
    u = (c * px + s * py) / rad
    v = (-s * px + c * py) / rad
    hit = _inside(o, u, v).reshape(y1 - y0, n, x1 - x0, n)
    cov[y0:y1, x0:x1] = hit.mean(axis=(1, 3))
    return cov


def render_clip(spec: ClipSpec, with_masks: bool = False):
    """uint8 [F,H,W,3] frames; with_masks also returns each object's own coverage [F,objects,H,W] in 0..1."""
    bg = _background(spec)
    tracks = object_tracks(spec)
    frames = np.empty((spec.frames, spec.size, spec.size, 3), np.uint8)
    masks = np.zeros((spec.frames, len(spec.objects), spec.size, spec.size), np.float32) if with_masks else None
    for f in range(spec.frames):
        img = bg.copy()
        for i, o in enumerate(spec.objects):
            cov = _coverage(o, tracks[i, f], spec.size)
            img = img * (1 - cov[..., None]) + np.array(COLOURS[o.colour], np.float64) * cov[..., None]
            if with_masks:
                masks[f, i] = cov
        frames[f] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return (frames, masks) if with_masks else frames


def _direction(vx: float, vy: float) -> str:
    parts = []
    if abs(vx) > 0.35 * math.hypot(vx, vy):
        parts.append("right" if vx > 0 else "left")
    if abs(vy) > 0.35 * math.hypot(vx, vy):
        parts.append("down" if vy > 0 else "up")
    return " and ".join(parts)


def caption(spec: ClipSpec) -> str:
    """One sentence: every object with its colour and motions, then the background."""
    phrases = []
    for o in spec.objects:
        name = f"digit {o.digit}" if o.shape == "digit" else o.shape
        motions = []
        if o.velocity != (0.0, 0.0):
            motions.append(f"moving {_direction(*o.velocity)}" + (" and bouncing off the edges" if _bounces(spec, o) else ""))
        if o.omega:
            motions.append("rotating " + ("clockwise" if o.omega > 0 else "counter-clockwise"))
        if o.scale_amp:
            motions.append("growing and shrinking")
        phrases.append(f"a {o.colour} {name} " + ", ".join(motions))
    a, b = spec.bg_colours
    bg = {"plain": f"a plain {a} background", "gradient": f"a {a} to {b} gradient background",
          "stripes": f"a {a} and {b} striped background", "checkerboard": f"a {a} and {b} checkerboard background",
          "noise": f"a mottled {a} and {b} background"}[spec.background]
    return "; ".join(phrases) + f"; on {bg}"


def make_clip(seed: int, frames: int = 32, size: int = 64) -> tuple[np.ndarray, str]:
    """(uint8 [frames, size, size, 3] RGB clip, caption) for a seed; identical bytes for identical arguments."""
    spec = clip_spec(seed, frames, size)
    return render_clip(spec), caption(spec)


def split_seeds(split: str, count: int) -> list[int]:
    """The first `count` seeds of a split; train, val and test use disjoint seed ranges."""
    if split not in _SPLIT_BASE:
        raise ValueError(f"atomo_demo.world: split must be one of {SPLITS}, got {split!r}")
    count = _check_int("count", count, 0, _SPLIT_SIZE)
    return [_SPLIT_BASE[split] + i for i in range(count)]


def write_video(path: Path, frames: np.ndarray, fmt: str = "mp4", fps: int = FPS) -> Path:
    """Writes uint8 [F,H,W,3] frames with PyAV: mp4, animated webp (lossless) or gif (one palette for the clip).

    mp4 is H.264 in 4:4:4 at crf 10 (about 42 dB): 4:2:0 chroma costs 15 dB on these small saturated clips, which
    would make the training data blurrier than the world. Browsers may not play 4:4:4; use webp or gif to look.
    """
    import av  # imported here so the generator itself needs only numpy

    if fmt not in FORMATS:
        raise ValueError(f"atomo_demo.world: fmt must be one of {FORMATS}, got {fmt!r}")
    path = Path(path)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"atomo_demo.world: frames must be uint8 [F,H,W,3], got {frames.dtype} {tuple(frames.shape)}")
    f, h, w, _ = frames.shape
    with av.open(str(path), "w", format={"mp4": "mp4", "webp": "webp", "gif": "gif"}[fmt]) as out:
        if fmt == "mp4":
            st = out.add_stream("libx264", rate=fps, options={"crf": "10", "preset": "medium"})
            st.pix_fmt = "yuv444p"
        elif fmt == "webp":
            st = out.add_stream("libwebp_anim", rate=fps, options={"lossless": "1", "loop": "0"})
            st.pix_fmt = "bgra"
        else:
            st = out.add_stream("gif", rate=fps)
            st.pix_fmt = "pal8"
        st.width, st.height = w, h
        todo = _gif_palette_frames(frames, fps) if fmt == "gif" else (
            av.VideoFrame.from_ndarray(np.ascontiguousarray(fr), format="rgb24") for fr in frames)
        for vf in todo:
            for packet in st.encode(vf):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)
    return path


def _gif_palette_frames(frames: np.ndarray, fps: int) -> list:
    """pal8 frames with one palette computed from the whole clip (FFmpeg palettegen/paletteuse, no dithering)."""
    import fractions

    import av

    g = av.filter.Graph()
    src = g.add_buffer(width=frames.shape[2], height=frames.shape[1], format="rgb24", time_base=fractions.Fraction(1, fps))
    split, gen = g.add("split"), g.add("palettegen", "stats_mode=full")
    use, sink = g.add("paletteuse", "dither=none"), g.add("buffersink")
    src.link_to(split)
    split.link_to(gen, 0, 0)
    split.link_to(use, 1, 0)
    gen.link_to(use, 0, 1)
    use.link_to(sink)
    g.configure()
    for i, fr in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(fr), format="rgb24")
        vf.pts = i
        src.push(vf)
    src.push(None)
    out = []
    while True:
        try:
            vf = sink.pull()
        except av.error.EOFError:
            break
        vf.pts = None
        out.append(vf)
    return out


def write_clips(out_dir, split: str, count: int, frames: int = 32, size: int = 64, fmt: str = "mp4") -> list[Path]:
    """Writes `<split>_<index>_s<seed>.<fmt>` and the caption beside it as `.txt`; returns the video paths."""
    if fmt not in FORMATS:
        raise ValueError(f"atomo_demo.world: fmt must be one of {FORMATS}, got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, seed in enumerate(split_seeds(split, count)):
        clip, text = make_clip(seed, frames, size)
        name = f"{split}_{i:05d}_s{seed}"
        paths.append(write_video(out_dir / f"{name}.{fmt}", clip, fmt))
        (out_dir / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m atomo_demo.world", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder (created)")
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--count", type=int, required=True, help="number of clips (the split's first seeds)")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fmt", choices=FORMATS, default="mp4")
    a = p.parse_args(argv)
    paths = write_clips(a.out, a.split, a.count, a.frames, a.size, a.fmt)
    print(f"wrote {len(paths)} {a.fmt} clips ({a.frames} frames, {a.size} px) and captions to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
