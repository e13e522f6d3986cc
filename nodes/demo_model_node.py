"""Node `AtomoVideoDemoModel`: the pack's own small demo model, VAE and empty conditioning, no downloads."""
from __future__ import annotations

from comfy_api.latest import io

from ..atomo_host import file_checks
from ..atomo_host.demo_model import DEFAULT_BASE, bundled_bases, load_demo
from .base import AtomoNode

NODE = "AtomoVideoDemoModel"


class AtomoVideoDemoModel(AtomoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE,
            display_name="AtomoVideo Demo Model",
            category="AtomoVideo",
            description="The small image model, VAE and (empty) conditioning the pack ships for its demo: 64x64 "
                        "videos of the project's synthetic world, with nothing downloaded. Connect MODEL to "
                        "AtomoVideo Loader with demo_atomovideo.safetensors; everything after is the ordinary "
                        "nodes.",
            inputs=[
                io.Combo.Input("base", options=bundled_bases(), default=DEFAULT_BASE, optional=True,
                               tooltip="The demo base image model, from the pack's atomo_demo/weights/ folder (a "
                                       "small SD1.5-family UNet trained by the project on its synthetic world, "
                                       "for 64x64 pictures)."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The demo base, an SD1.5-family model (64 channels "
                                "instead of 320); connect it to AtomoVideo Loader."),
                io.Vae.Output(display_name="VAE", tooltip="The demo VAE (TAESD layout, SD1.5 latent scale), for "
                              "AtomoVideo Image Conditioning, Long Video and VAE Decode."),
                io.Conditioning.Output(display_name="positive", tooltip="Empty conditioning (one zero token): "
                                       "the demo base is unconditional, it has no text encoder."),
                io.Conditioning.Output(display_name="negative", tooltip="The same empty conditioning; keep CFG "
                                       "at 1 with the demo model (guidance between two equal conditions only "
                                       "costs time)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, base=DEFAULT_BASE) -> bool | str:
        return file_checks.demo_files(NODE, base)

    @classmethod
    def execute(cls, base=DEFAULT_BASE) -> io.NodeOutput:
        return io.NodeOutput(*load_demo(base))
