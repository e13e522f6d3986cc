"""The run's TOML: `[data]` and `[conditioning]` (see `data.config`, `draws`) plus the trainer's own sections.

Every key has a default except `data.path` and `model.checkpoint`. CLI `--set section.key=value` overrides a key
(the value is read as TOML, so `--set optim.lr=3e-5` is a number and `--set output.dir="runs/a"` a string).
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .config_checks import get_bool, get_choice, get_float, get_int, get_str, reject_unknown
from .data.config import DataConfig
from .draws import DrawConfig
from .errors import ConfigError

PRECISIONS = ("auto", "no", "fp16", "bf16")
IMAGE_PROJECTIONS = ("none", "base", "plus")
PREDICTIONS = ("v", "eps")  # atomo_core.noise_schedules.PREDICTIONS (config stays free of torch)


def _opt_path(base: Path, value: str | None) -> Path | None:
    if value is None or value == "":
        return None
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


@dataclass(frozen=True)
class ModelConfig:
    """`[model]`: the base checkpoint and the shape of the temporal layers."""
    checkpoint: Path
    max_frames: int = 16            # positional-encoding length written to the file (at least data.frames)
    temporal_conv: bool = True      # the 1D temporal convolutions after every ResBlock
    heads: int = 8
    gradient_checkpointing: bool = False   # the frozen ResBlocks / SpatialTransformers and the temporal layers
    clip_vision: Path | None = None        # CLIP-vision file: the cache stores its features of every frame
    image_projection: str = "none"         # fresh projection when init.ip_adapter is not given: none|base|plus
    train_image_projection: bool = True    # train the projection and to_k_ip/to_v_ip (when there is one)
    vae: Path | None = None                # a VAE file used instead of the checkpoint's (required if it has none)
    prediction: str = "v"                  # v: AtomoVideo's zero-terminal-SNR v-prediction; eps: the comparison

    @classmethod
    def from_dict(cls, d: dict, base: Path) -> "ModelConfig":
        s = "model"
        reject_unknown(s, d, [f.name for f in fields(cls)])
        if "checkpoint" not in d:
            raise ConfigError(f"{s}.checkpoint", "is required: the path of your SD1.5 checkpoint (.safetensors)")
        return cls(checkpoint=_opt_path(base, get_str(s, d, "checkpoint", None)),
                   max_frames=get_int(s, d, "max_frames", 16, lo=2, hi=1024),
                   temporal_conv=get_bool(s, d, "temporal_conv", True),
                   heads=get_int(s, d, "heads", 8, lo=1),
                   gradient_checkpointing=get_bool(s, d, "gradient_checkpointing", False),
                   clip_vision=_file(s, "clip_vision", _opt_path(base, get_str(s, d, "clip_vision", None))),
                   image_projection=get_choice(s, d, "image_projection", "none", IMAGE_PROJECTIONS),
                   train_image_projection=get_bool(s, d, "train_image_projection", True),
                   vae=_file(s, "vae", _opt_path(base, get_str(s, d, "vae", None))),
                   prediction=get_choice(s, d, "prediction", "v", PREDICTIONS))


def _file(section: str, key: str, p: Path | None) -> Path | None:
    if p is not None and not p.is_file():
        raise ConfigError(f"{section}.{key}", f"{_not_a_file(p)}. Give the path of the file, or remove the key.")
    return p


def _not_a_file(p: Path) -> str:
    return f"{p} is a folder, not a file" if p.is_dir() else f"file not found: {p}"


@dataclass(frozen=True)
class InitConfig:
    """`[init]`: public files to start from (any subset); empty = fresh identity layers."""
    motion_module: Path | None = None   # AnimateDiff v2/v3 (or v1/AnimateLCM) motion module -> temporal attention
    pia: Path | None = None             # pia.ckpt -> the extra conv_in channels (its motion modules are not used)
    ip_adapter: Path | None = None      # IP-Adapter SD1.5 file -> the image projection and to_k_ip/to_v_ip

    @classmethod
    def from_dict(cls, d: dict, base: Path) -> "InitConfig":
        s = "init"
        reject_unknown(s, d, [f.name for f in fields(cls)])
        out = cls(**{name: _opt_path(base, get_str(s, d, name, None))
                     for name in ("motion_module", "pia", "ip_adapter")})
        for name in ("motion_module", "pia", "ip_adapter"):
            p = getattr(out, name)
            if p is not None and not p.is_file():
                raise ConfigError(f"{s}.{name}", f"{_not_a_file(p)}. Give the path of the file, or remove the "
                                  "key to start fresh.")
        return out


@dataclass(frozen=True)
class OptimConfig:
    """`[optim]`: AdamW with linear warm-up; `batch_size` is the global batch of one optimizer step."""
    lr: float = 1e-4
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_steps: int = 100
    max_steps: int = 1000
    decay_steps: int = 0            # the last N steps decay the lr linearly to 0 (warm-up, stable, decay); 0 = off
    batch_size: int = 1             # clips per optimizer step over all processes and accumulation steps
    grad_accum: int = 1             # micro-batches per optimizer step in each process
    clip_grad_norm: float = 1.0     # 0 = off
    ema_decay: float = 0.0          # 0 = off; e.g. 0.999: the weight file holds the EMA weights
    mixed_precision: str = "auto"   # auto = bf16 on GPUs that have it, else fp16 on GPU; fp32 on CPU
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "OptimConfig":
        s = "optim"
        reject_unknown(s, d, [f.name for f in fields(cls)])
        betas = d.get("betas", [0.9, 0.999])
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(
                isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"{s}.betas", f"must be two numbers in [0, 1), e.g. [0.9, 0.999]; got {betas!r}")
        out = cls(lr=get_float(s, d, "lr", 1e-4, lo=0.0), betas=(float(betas[0]), float(betas[1])),
                   weight_decay=get_float(s, d, "weight_decay", 0.01, lo=0.0),
                   eps=get_float(s, d, "eps", 1e-8, lo=0.0),
                   warmup_steps=get_int(s, d, "warmup_steps", 100, lo=0),
                   max_steps=get_int(s, d, "max_steps", 1000, lo=1),
                   decay_steps=get_int(s, d, "decay_steps", 0, lo=0),
                   batch_size=get_int(s, d, "batch_size", 1, lo=1),
                   grad_accum=get_int(s, d, "grad_accum", 1, lo=1),
                   clip_grad_norm=get_float(s, d, "clip_grad_norm", 1.0, lo=0.0),
                   ema_decay=get_float(s, d, "ema_decay", 0.0, lo=0.0, hi=0.999999),
                   mixed_precision=get_choice(s, d, "mixed_precision", "auto", PRECISIONS),
                   seed=get_int(s, d, "seed", 0, lo=0))
        if out.decay_steps > out.max_steps:
            raise ConfigError(f"{s}.decay_steps", f"{out.decay_steps} is more than optim.max_steps "
                              f"({out.max_steps}); the decay is the last part of the run: use at most max_steps")
        return out

    def micro_batch(self, processes: int) -> int:
        """Clips per forward pass in each process; the global batch must split evenly."""
        parts = processes * self.grad_accum
        if self.batch_size % parts:
            raise ConfigError("optim.batch_size", f"{self.batch_size} clips do not split over {processes} "
                              f"process(es) x {self.grad_accum} accumulation step(s); use a multiple of {parts}")
        return self.batch_size // parts


@dataclass(frozen=True)
class OutputConfig:
    """`[output]`: where weights, training states and logs go."""
    dir: Path
    name: str = "atomovideo"        # weight files: <dir>/<name>-step<N>.safetensors and <name>.safetensors
    save_every: int = 500           # weight file every N steps (and at the end)
    state_every: int = 500          # accelerate state every N steps (and at the end), for --resume
    keep_states: int = 3            # training states kept (oldest deleted)
    log_every: int = 10             # TensorBoard scalars every N steps

    @classmethod
    def from_dict(cls, d: dict, base: Path) -> "OutputConfig":
        s = "output"
        reject_unknown(s, d, [f.name for f in fields(cls)])
        return cls(dir=_opt_path(base, get_str(s, d, "dir", "output/atomovideo-train")),
                   name=get_str(s, d, "name", "atomovideo"),
                   save_every=get_int(s, d, "save_every", 500, lo=1),
                   state_every=get_int(s, d, "state_every", 500, lo=1),
                   keep_states=get_int(s, d, "keep_states", 3, lo=1),
                   log_every=get_int(s, d, "log_every", 10, lo=1))


@dataclass(frozen=True)
class ValidationConfig:
    """`[validation]`: eval loss at fixed timestep quantiles and image-to-video samples every `every` steps."""
    every: int = 0                  # 0 = off
    clips: int = 4                  # held-out clips for the eval loss (split "val" of the cache, else "train")
    quantiles: tuple = (0.1, 0.3, 0.5, 0.7, 0.9)
    samples: int = 1                # image-to-video samples (first frames of held-out clips)
    steps: int = 10
    cfg: float = 3.0
    cfg_rescale: float = 0.7
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "ValidationConfig":
        s = "validation"
        reject_unknown(s, d, [f.name for f in fields(cls)])
        q = d.get("quantiles", [0.1, 0.3, 0.5, 0.7, 0.9])
        if not (isinstance(q, list) and q and all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in q)):
            raise ConfigError(f"{s}.quantiles", f"must be a list of numbers in [0, 1], got {q!r}")
        return cls(every=get_int(s, d, "every", 0, lo=0), clips=get_int(s, d, "clips", 4, lo=1),
                   quantiles=tuple(float(x) for x in q), samples=get_int(s, d, "samples", 1, lo=0),
                   steps=get_int(s, d, "steps", 10, lo=1), cfg=get_float(s, d, "cfg", 3.0, lo=0.0),
                   cfg_rescale=get_float(s, d, "cfg_rescale", 0.7, lo=0.0, hi=1.0),
                   seed=get_int(s, d, "seed", 0, lo=0))


SECTIONS = ("data", "conditioning", "model", "init", "optim", "output", "validation")


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig
    conditioning: DrawConfig
    model: ModelConfig
    init: InitConfig
    optim: OptimConfig
    output: OutputConfig
    validation: ValidationConfig
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict, base_dir: str | Path | None = None) -> "TrainConfig":
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        for key in d:
            if key not in SECTIONS:
                raise ConfigError(str(key), f"unknown section; known sections: {', '.join(SECTIONS)}")
        cfg = cls(data=DataConfig.from_dict(d.get("data"), base_dir=base),
                  conditioning=DrawConfig.from_dict(d.get("conditioning", {})),
                  model=ModelConfig.from_dict(d.get("model", {}), base),
                  init=InitConfig.from_dict(d.get("init", {}), base),
                  optim=OptimConfig.from_dict(d.get("optim", {})),
                  output=OutputConfig.from_dict(d.get("output", {}), base),
                  validation=ValidationConfig.from_dict(d.get("validation", {})),
                  raw=d)
        if (cfg.init.ip_adapter is not None or cfg.model.image_projection != "none") and cfg.model.clip_vision is None:
            what = "init.ip_adapter" if cfg.init.ip_adapter is not None else "model.image_projection"
            raise ConfigError("model.clip_vision", f"is required with {what}: the path of the CLIP-vision file "
                              "(e.g. CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors) whose features the image "
                              "projection reads")
        if cfg.data.frames > cfg.model.max_frames:
            raise ConfigError("model.max_frames", f"{cfg.model.max_frames} is less than data.frames = "
                              f"{cfg.data.frames}; raise model.max_frames to at least {cfg.data.frames}")
        return cfg

    def hash(self) -> str:
        """Identifies the settings that shape the result (not output paths or logging)."""
        d = {k: _jsonable(asdict(getattr(self, k))) for k in ("data", "conditioning", "model", "init", "optim")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return v.name
    return v


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """`section.key=value` pairs (value parsed as TOML, else taken as a string) onto a nested dict."""
    out = json.loads(json.dumps(d))
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(key or item, f"--set expects section.key=value (e.g. optim.lr=3e-5), got {item!r}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out.setdefault(parts[0], {})[parts[1]] = value
    return out


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    d: dict = {}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("--config", f"file not found: {p}")
        try:
            d = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("--config", f"{p} is not valid TOML ({e}); fix that line (see "
                              "atomo_train/configs/example_run.toml for the format)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError("--config", f"cannot read {p} ({type(e).__name__}); check its permissions and that it "
                              "is a UTF-8 text file") from None
        base = p.resolve().parent
    return TrainConfig.from_dict(apply_overrides(d, list(overrides)), base_dir=base)
