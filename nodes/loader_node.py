"""Node `AtomoVideoLoader`: inflate any loaded SD1.5 model with AtomoVideo temporal layers."""
from __future__ import annotations

import folder_paths
from comfy_api.latest import io

from ..atomo_core.errors import AtomoVideoError, input_error
from ..atomo_core.pia_presets import DEFAULT_PRESET, PRESET_NAMES
from ..atomo_core.weight_files import load_temporal_weights
from .beta_schedules import apply_beta_schedule
from .model_family import check_sd15_base
from .spatial_groupnorm import ACROSS_FRAMES, ACROSS_FRAMES_ALL, PER_FRAME, apply_spatial_groupnorm
from .unet_inflation import host_layout, inflate

NODE = "AtomoVideoLoader"
WEIGHT_FOLDERS = ("atomovideo", "animatediff_models")
SCHEDULE_FROM_WEIGHTS = "from weights"
SCHEDULE_KEEP = "keep model's"
GROUPNORM_FROM_WEIGHTS = "from weights"
GROUPNORM_OPTIONS = {  # option -> spatial_groupnorm mode
    "per frame": PER_FRAME,
    "across frames": ACROSS_FRAMES,
    "across frames, transformer norms too (AnimateDiff-Evolved)": ACROSS_FRAMES_ALL,
}


def weight_file_names() -> list[str]:
    names = []
    for folder in WEIGHT_FOLDERS:
        names += [n for n in folder_paths.get_filename_list(folder) if n not in names]
    return names


def weight_file_path(name: str) -> str:
    for folder in WEIGHT_FOLDERS:
        path = folder_paths.get_full_path(folder, name)
        if path:
            return path
    searched = [p for f in WEIGHT_FOLDERS for p in folder_paths.get_folder_paths(f)]
    raise input_error(NODE, "weights", f"'{name}' was not found in {searched}. Put the file there "
                                       "(or in a folder named in extra_model_paths.yaml) and refresh.")


class AtomoVideoLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE,
            display_name="Load AtomoVideo Temporal Layers",
            category="AtomoVideo",
            description="Adds temporal layers (and the 9-channel image input) to an SD1.5 model so it "
                        "generates videos. The model you pass in is not changed.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.5 model (from Load Checkpoint, optionally with LoRAs). "
                                                 "SDXL, SD2, inpainting and video models are refused."),
                io.Combo.Input("weights", options=weight_file_names(),
                               tooltip="Temporal-layer file from models/atomovideo/ (AtomoVideo) or "
                                       "models/animatediff_models/ (AnimateDiff v1/v2/v3, AnimateLCM and PIA "
                                       "SD1.5 motion modules, shared with AnimateDiff-Evolved)."),
                io.Combo.Input("noise_schedule", options=[SCHEDULE_FROM_WEIGHTS, SCHEDULE_KEEP],
                               default=SCHEDULE_FROM_WEIGHTS,
                               tooltip="'from weights': use the prediction type and schedule the weights were "
                                       "trained with (v-prediction + zero terminal SNR for AtomoVideo files). "
                                       "'keep model's': leave the model's sampling as it is. AnimateDiff and PIA files "
                                       "are eps models trained with the linear (ComfyUI 'sqrt_linear') beta "
                                       "schedule, and AnimateLCM wants LCM sampling: 'from weights' applies them, "
                                       "as AnimateDiff-Evolved's 'autoselect' does."),
                io.Combo.Input("spatial_groupnorm", options=[GROUPNORM_FROM_WEIGHTS, *GROUPNORM_OPTIONS],
                               default=GROUPNORM_FROM_WEIGHTS, optional=True,
                               tooltip="How the base UNet's ResNet GroupNorms take statistics. 'from weights': "
                                       "across all frames for AnimateDiff v1 and PIA (as they were trained), per "
                                       "frame for v2, v3, AnimateLCM and AtomoVideo files. The last option also "
                                       "normalises the spatial transformers' inputs across frames, matching "
                                       "AnimateDiff-Evolved's v1/PIA behaviour."),
                io.Combo.Input("pia_motion", options=list(PRESET_NAMES), default=DEFAULT_PRESET, optional=True,
                               tooltip="PIA weights only: the paper's motion preset. The image-conditioning "
                                       "frame mask becomes PIA's per-frame affinity (1.0 on the image frame, "
                                       "smaller further away; smaller values allow more motion); the image goes "
                                       "to every frame. Ignored for other weights."),
            ],
            outputs=[io.Model.Output(tooltip="The model with temporal layers; sample it with frames as the "
                                             "latent batch.")],
        )

    @classmethod
    def execute(cls, model, weights, noise_schedule=SCHEDULE_FROM_WEIGHTS,
                spatial_groupnorm=GROUPNORM_FROM_WEIGHTS, pia_motion=DEFAULT_PRESET) -> io.NodeOutput:
        check_sd15_base(model, NODE)
        path = weight_file_path(weights)
        try:
            loaded = load_temporal_weights(path, layout=host_layout(model.get_model_object("diffusion_model")))
        except AtomoVideoError as e:
            raise input_error(NODE, "weights", str(e)) from None
        meta = loaded.metadata
        if pia_motion not in PRESET_NAMES:
            raise input_error(NODE, "pia_motion", f"unknown preset '{pia_motion}'; expected one of "
                                                  f"{list(PRESET_NAMES)}")
        inflated = inflate(model, loaded, weights, NODE,
                           affinity_preset=pia_motion if meta.source_format == "pia" else None)
        if spatial_groupnorm == GROUPNORM_FROM_WEIGHTS:
            mode = meta.spatial_groupnorm
        elif spatial_groupnorm in GROUPNORM_OPTIONS:
            mode = GROUPNORM_OPTIONS[spatial_groupnorm]
        else:
            raise input_error(NODE, "spatial_groupnorm", f"unknown option '{spatial_groupnorm}'; expected one of "
                                                         f"{[GROUPNORM_FROM_WEIGHTS, *GROUPNORM_OPTIONS]}")
        inflated = apply_spatial_groupnorm(inflated, mode)
        if noise_schedule == SCHEDULE_FROM_WEIGHTS and meta.prediction == "eps" and \
                meta.beta_schedule != "scaled_linear":
            inflated = apply_beta_schedule(inflated, meta.beta_schedule)
        if noise_schedule == SCHEDULE_FROM_WEIGHTS and meta.prediction == "v" and meta.zero_terminal_snr:
            from .sampling_glue import apply_zero_snr_vprediction

            inflated = apply_zero_snr_vprediction(inflated, cfg_rescale=0.7)
        return io.NodeOutput(inflated)
