"""Loading temporal-layer weights into an SD1.5 model: check the base, find and read the file, inflate, and set
the sampling and GroupNorm behaviour the weights were trained with. The loader node is one call of
`load_video_model`; the trainer uses `check_sd15_base` and `inflation.inflate` directly."""
from __future__ import annotations

from dataclasses import dataclass

from ..atomo_core.errors import AtomoVideoError, in_field
from ..atomo_core.pia_presets import DEFAULT_PRESET, PRESET_NAMES
from ..atomo_core.weight_files import load_temporal_weights
from ..atomo_core.weight_format import ACROSS_FRAMES, ACROSS_FRAMES_ALL, PER_FRAME, SCALED_LINEAR
from . import model_files
from .beta_schedules import apply_beta_schedule
from .inflation import host_layout, inflate
from .model_family import check_sd15_base
from .spatial_groupnorm import apply_spatial_groupnorm
from .zero_snr import apply_zero_snr_vprediction

WEIGHT_FOLDERS = ("atomovideo", "animatediff_models")
SCHEDULE_FROM_WEIGHTS = "from weights"
SCHEDULE_KEEP = "keep model's"
GROUPNORM_FROM_WEIGHTS = "from weights"
GROUPNORM_OPTIONS = {  # option -> spatial_groupnorm mode
    "per frame": PER_FRAME,
    "across frames": ACROSS_FRAMES,
    "across frames, transformer norms too (AnimateDiff-Evolved)": ACROSS_FRAMES_ALL,
}
LOADER_CFG_RESCALE = 0.7  # what the loader sets for v + zero-SNR weights


@dataclass(frozen=True)
class LoadSettings:
    """The loader's choices (see the node's tooltips)."""
    weights: str
    noise_schedule: str = SCHEDULE_FROM_WEIGHTS
    spatial_groupnorm: str = GROUPNORM_FROM_WEIGHTS
    pia_motion: str = DEFAULT_PRESET


def groupnorm_mode(option: str, from_weights: str) -> str:
    if option == GROUPNORM_FROM_WEIGHTS:
        return from_weights
    if option in GROUPNORM_OPTIONS:
        return GROUPNORM_OPTIONS[option]
    raise AtomoVideoError("spatial_groupnorm", f"unknown option '{option}'; expected one of "
                                               f"{[GROUPNORM_FROM_WEIGHTS, *GROUPNORM_OPTIONS]}")


def load_video_model(model, settings: LoadSettings, owner: str | None = None):
    """A clone of `model` with the temporal layers of `settings.weights`; `owner` names the node in errors raised
    later, while sampling (see `inflation.inflate`)."""
    check_sd15_base(model)
    path = model_files.file_path(WEIGHT_FOLDERS, settings.weights, "weights")
    with in_field("weights"):
        loaded = load_temporal_weights(path, layout=host_layout(model.get_model_object("diffusion_model")))
    return video_model(model, loaded, settings, owner)


def video_model(model, loaded, settings: LoadSettings, owner: str | None = None):
    """`load_video_model` after the file is read: weights already in memory (the demo's claims use it for the
    file as loaded and for the same weights with their temporal layers zeroed)."""
    check_sd15_base(model)
    meta = loaded.metadata
    if settings.pia_motion not in PRESET_NAMES:
        raise AtomoVideoError("pia_motion", f"unknown preset '{settings.pia_motion}'; expected one of "
                                            f"{list(PRESET_NAMES)}")
    preset = settings.pia_motion if meta.source_format == "pia" else None
    inflated = inflate(model, loaded, settings.weights, affinity_preset=preset, owner=owner)
    inflated = apply_spatial_groupnorm(inflated, groupnorm_mode(settings.spatial_groupnorm, meta.spatial_groupnorm))
    if settings.noise_schedule == SCHEDULE_FROM_WEIGHTS:
        if meta.prediction == "eps" and meta.beta_schedule != SCALED_LINEAR:
            inflated = apply_beta_schedule(inflated, meta.beta_schedule)
        if meta.prediction == "v" and meta.zero_terminal_snr:
            inflated = apply_zero_snr_vprediction(inflated, cfg_rescale=LOADER_CFG_RESCALE)
    return inflated
