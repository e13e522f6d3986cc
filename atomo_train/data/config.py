"""The `[data]` section of a training TOML."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..config_checks import get_choice, get_float, get_int, get_str, reject_unknown
from ..errors import ConfigError

SECTION = "data"
CACHE_DIRNAME = ".atomovideo-cache"


@dataclass(frozen=True)
class DataConfig:
    """Validated `[data]` settings; paths are absolute. `stride` is None when `fps` is set."""

    path: Path
    frames: int = 16
    stride: int | None = 2
    fps: float | None = None
    start: str = "random"
    clips_per_video: int = 1
    size: tuple[int, int] = (256, 256)  # (width, height)
    crop: str = "center"
    val_fraction: float = 0.0
    val_path: Path | None = None
    cache_dir: Path | None = None
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict | None, base_dir: str | Path | None = None) -> "DataConfig":
        """Relative paths are taken from `base_dir` (the TOML file's folder) or the working directory."""
        if d is None:
            raise ConfigError(SECTION, "the [data] section is missing; add it with at least `path = \"my_videos\"`")
        reject_unknown(SECTION, d, [f.name for f in fields(cls)])
        s = SECTION
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        if "path" not in d:
            raise ConfigError(f"{s}.path", "is required: a folder of videos with same-name .txt captions, or a "
                              ".csv/.jsonl list with path and caption columns")
        path = _path(base, get_str(s, d, "path", None))
        if "stride" in d and "fps" in d:
            raise ConfigError(f"{s}.fps", "give either stride (every n-th frame) or fps (resample to a frame "
                              "rate), not both; remove one of them")
        fps = get_float(s, d, "fps", None)
        if fps is not None and fps <= 0:
            raise ConfigError(f"{s}.fps", f"must be above 0 frames per second, got {fps}")
        stride = None if fps is not None else get_int(s, d, "stride", 2, lo=1)
        val_path = get_str(s, d, "val_path", None)
        val_fraction = get_float(s, d, "val_fraction", 0.0, lo=0.0, hi=0.9)
        if val_path is not None and val_fraction > 0:
            raise ConfigError(f"{s}.val_fraction", "give either val_fraction (hold out part of data.path) or "
                              "val_path (a separate set of videos), not both")
        cache_dir = get_str(s, d, "cache_dir", None)
        return cls(
            path=path,
            frames=get_int(s, d, "frames", 16, lo=2, hi=1024),
            stride=stride,
            fps=fps,
            start=get_choice(s, d, "start", "random", ("random", "fixed")),
            clips_per_video=get_int(s, d, "clips_per_video", 1, lo=1),
            size=_size(d.get("size", 256)),
            crop=get_choice(s, d, "crop", "center", ("center", "random")),
            val_fraction=val_fraction,
            val_path=_path(base, val_path) if val_path is not None else None,
            cache_dir=_path(base, cache_dir) if cache_dir is not None else None,
            seed=get_int(s, d, "seed", 0, lo=0),
        )

    @property
    def cache_path(self) -> Path:
        """`cache_dir`, or `.atomovideo-cache` in the data folder (beside the list file for a .csv/.jsonl)."""
        if self.cache_dir is not None:
            return self.cache_dir
        folder = self.path if self.path.suffix.lower() not in (".csv", ".jsonl") else self.path.parent
        return folder / CACHE_DIRNAME

    def sampling_settings(self) -> dict:
        """What the cached latents depend on (not the paths, the split or the cache folder)."""
        d = asdict(self)
        keep = ("frames", "stride", "fps", "start", "clips_per_video", "size", "crop", "seed")
        return {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in keep}


def _path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _size(value) -> tuple[int, int]:
    key = f"{SECTION}.size"
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a number of pixels or [width, height], got {value!r}")
    if isinstance(value, int):
        wh = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        wh = (value[0], value[1])
    else:
        raise ConfigError(key, f"must be a number of pixels (256) or [width, height] ([384, 256]), got {value!r}")
    for v in wh:
        if v < 64 or v % 8:
            raise ConfigError(key, f"each side must be a multiple of 8 and at least 64 pixels (the VAE works on "
                              f"8x8 blocks), got {value!r}; 256 or 512 are usual for SD1.5")
    return wh
