"""Node `AtomoVideoLoader`: inflate any loaded SD1.5 model with AtomoVideo temporal layers."""
from __future__ import annotations

from comfy_api.latest import io

from ..atomo_core.pia_presets import DEFAULT_PRESET, PRESET_NAMES
from ..atomo_host.loading import (GROUPNORM_FROM_WEIGHTS, GROUPNORM_OPTIONS, SCHEDULE_FROM_WEIGHTS, SCHEDULE_KEEP,
                                  WEIGHT_FOLDERS, LoadSettings, load_video_model)
from ..atomo_host import file_checks
from ..atomo_host.model_files import file_names
from .base import AtomoNode

NODE = "AtomoVideoLoader"


class AtomoVideoLoader(AtomoNode):
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
                io.Combo.Input("weights", options=file_names(WEIGHT_FOLDERS),
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
    def validate_inputs(cls, weights) -> bool | str:
        return file_checks.temporal_weights(NODE, weights, WEIGHT_FOLDERS)

    @classmethod
    def execute(cls, model, weights, noise_schedule=SCHEDULE_FROM_WEIGHTS,
                spatial_groupnorm=GROUPNORM_FROM_WEIGHTS, pia_motion=DEFAULT_PRESET) -> io.NodeOutput:
        return io.NodeOutput(load_video_model(model, LoadSettings(weights, noise_schedule, spatial_groupnorm,
                                                                  pia_motion), owner=NODE))
