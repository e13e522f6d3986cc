"""Node `AtomoVideoImageConditioning`: the low-level image injection (image latent + frame mask).

The given frames are VAE-encoded (in chunks of frames, so memory stays bounded) and placed at their frame
indices; the other frames carry zeros. The raw (unscaled) latent `[F, 4, h, w]` and the mask `[F, 1, h, w]`
(1 = given) travel in the conditioning as `model_conds` (see `atomo_host.conditioning`); the model glue of the
loaded weights scales the latent with the model's latent format and lays the channels out in the order the
weights declare (see `atomo_core.conditioning_layout`).
"""
from __future__ import annotations

from comfy_api.latest import io

from ..atomo_core import image_preparation as prep
from ..atomo_host import file_checks, inputs
from ..atomo_host.conditioning import ImageConditioning, condition_video
from .base import AtomoNode

NODE = "AtomoVideoImageConditioning"


class AtomoVideoImageConditioning(AtomoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE,
            display_name="AtomoVideo Image Conditioning",
            category="AtomoVideo",
            description="Puts the VAE latents of the given frames and a per-frame mask into the conditioning "
                        "(AtomoVideo's low-level image injection) and makes the empty video latent to sample.",
            inputs=[
                io.Conditioning.Input("positive", tooltip="Positive conditioning (text); the image condition is "
                                                          "added to it."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning; it gets the same image condition, "
                                                          "as AtomoVideo was trained with."),
                io.Vae.Input("vae", tooltip="The SD1.5 VAE (e.g. from the checkpoint) that encodes the images."),
                io.Image.Input("image", tooltip="One image per given frame: one image (first frame), several "
                                                "keyframes, or the last frames of a video (frame prediction). "
                                                "RGBA becomes RGB by dropping alpha."),
                io.Int.Input("frames", default=16, min=1, max=inputs.MAX_FRAMES,
                             tooltip="Number of frames of the video to generate (the latent batch size)."),
                io.Int.Input("width", default=512, min=8, max=inputs.MAX_SIZE, step=8,
                             tooltip="Video width in pixels; a multiple of 8 (other values are refused)."),
                io.Int.Input("height", default=512, min=8, max=inputs.MAX_SIZE, step=8,
                             tooltip="Video height in pixels; a multiple of 8 (other values are refused)."),
                io.String.Input("frame_indices", default="0",
                                tooltip="Frames the images are given at, in image order: '0' = first frame, "
                                        "'0,8,15' = keyframes, '0-3' = first four frames, '-1' = last frame. The "
                                        "number of indices must equal the number of images."),
                io.Combo.Input("resize_mode", options=list(prep.RESIZE_MODES), default=prep.CROP,
                               tooltip="How images of another size or aspect ratio are fitted: 'crop' fills the "
                                       "frame and cuts the overflow (centred), 'pad' keeps the whole image and "
                                       "fills the borders with black, 'stretch' distorts it to the frame."),
                io.Int.Input("encode_batch", default=8, min=1, max=256, optional=True,
                             tooltip="Frames VAE-encoded at a time; lower it if encoding long inputs runs out of "
                                     "memory."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive",
                                       tooltip="Positive conditioning with the image latent and frame mask."),
                io.Conditioning.Output(display_name="negative",
                                       tooltip="Negative conditioning with the image latent and frame mask."),
                io.Latent.Output(display_name="latent",
                                 tooltip="An empty [frames, 4, height/8, width/8] latent to sample (AtomoVideo "
                                         "starts from pure noise)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, resize_mode) -> bool | str:
        return file_checks.choices(cls, resize_mode=resize_mode)

    @classmethod
    def execute(cls, positive, negative, vae, image, **video) -> io.NodeOutput:
        return io.NodeOutput(*condition_video((positive, negative), vae, image, ImageConditioning(**video)))
