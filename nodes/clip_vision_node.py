"""Node `AtomoVideoCLIPVisionInject`: the high-level image injection (IP-Adapter-style decoupled cross-attention,
see `atomo_host.decoupled_attention`)."""
from __future__ import annotations

from comfy_api.latest import io

from ..atomo_host.decoupled_attention import Injection, inject
from ..atomo_host import file_checks
from ..atomo_host.image_tokens import FOLDER, FROM_ATOMOVIDEO, projection_choices
from .base import AtomoNode

NODE = "AtomoVideoCLIPVisionInject"


class AtomoVideoCLIPVisionInject(AtomoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE,
            display_name="AtomoVideo CLIP Vision Injection",
            category="AtomoVideo",
            description="Injects the image's semantics into every cross-attention of the UNet through decoupled "
                        "cross-attention (IP-Adapter style): text attention + weight x attention over image "
                        "tokens. All frames share the tokens.",
            inputs=[
                io.Model.Input("model", tooltip="The SD1.5 video model (e.g. from AtomoVideo Loader). It is not "
                                                "changed; a patched copy is returned."),
                io.ClipVision.Input("clip_vision", tooltip="CLIP vision encoder matching the projection: ViT-H "
                                                           "(CLIP-ViT-H-14-laion2B-s32B-b79K) for IP-Adapter SD1.5 "
                                                           "base and plus."),
                io.Image.Input("image", tooltip="The input image (centre-cropped to the CLIP size). Several "
                                                "images: their tokens are concatenated."),
                io.Combo.Input("projection", options=projection_choices(),
                               tooltip="Image-projection weights: from the AtomoVideo file loaded into the model, "
                                       "or an IP-Adapter SD1.5 file (base, plus, full-face; .safetensors or .bin) "
                                       "from models/ipadapter/."),
                io.Float.Input("weight", default=1.0, min=-1.0, max=5.0, step=0.01,
                               tooltip="Strength of the image attention; 0 = no effect."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Sampling progress at which the injection starts (0 = first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Sampling progress at which the injection stops (1 = last step)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the image injected into its cross-attention.")],
        )

    @classmethod
    def validate_inputs(cls, projection) -> bool | str:
        return file_checks.projection_file(NODE, projection, FOLDER, FROM_ATOMOVIDEO)

    @classmethod
    def execute(cls, model, clip_vision, image, **injection) -> io.NodeOutput:
        return io.NodeOutput(inject(model, clip_vision, image, Injection(**injection)))
