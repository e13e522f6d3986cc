"""Node `AtomoVideoImageConditioning`: the low-level image injection (image latent + frame mask).

The given frames are VAE-encoded (in chunks of frames, so memory stays bounded) and placed at their frame
indices; the other frames carry zeros. The raw (unscaled) latent `[F, 4, h, w]` and the mask `[F, 1, h, w]`
(1 = given) travel in the conditioning as `model_conds` `atomo_image` / `atomo_mask`; the model glue of the
loaded weights scales the latent with the model's latent format and lays the channels out in the order the
weights declare (see `atomo_core.conditioning_layout`).
"""
from __future__ import annotations

import torch

import comfy.conds
import comfy.model_management
from comfy_api.latest import io

from ..atomo_core import image_preparation as prep
from ..atomo_core.errors import AtomoVideoError, input_error
from .unet_inflation import IMAGE_COND, MASK_COND

NODE = "AtomoVideoImageConditioning"
MAX_FRAMES = 4096
MAX_SIZE = 8192


def with_model_conds(conditioning, values: dict):
    """A copy of `conditioning` whose entries carry `values` in `model_conds` (other model_conds are kept)."""
    out = []
    for emb, opts in conditioning:
        opts = opts.copy()
        merged = dict(opts.get("model_conds", {}))
        merged.update(values)
        opts["model_conds"] = merged
        out.append([emb, opts])
    return out


def encode_in_chunks(vae, image: torch.Tensor, width: int, height: int, mode: str, chunk: int) -> torch.Tensor:
    """Raw VAE latents of `image` [N, H, W, 3], resized and encoded `chunk` frames at a time."""
    parts = []
    for start, stop in prep.chunks(image.shape[0], chunk):
        pixels = prep.resize(image[start:stop], width, height, mode)
        latent = vae.encode(pixels[..., :3])
        parts.append(latent.to(comfy.model_management.intermediate_device(), torch.float32))
        del pixels
    return torch.cat(parts, dim=0)


class AtomoVideoImageConditioning(io.ComfyNode):
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
                io.Int.Input("frames", default=16, min=1, max=MAX_FRAMES,
                             tooltip="Number of frames of the video to generate (the latent batch size)."),
                io.Int.Input("width", default=512, min=8, max=MAX_SIZE, step=8,
                             tooltip="Video width in pixels; a multiple of 8 (other values are refused)."),
                io.Int.Input("height", default=512, min=8, max=MAX_SIZE, step=8,
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
    def execute(cls, positive, negative, vae, image, frames, width, height, frame_indices="0", resize_mode=prep.CROP,
                encode_batch=8) -> io.NodeOutput:
        image_latent, mask = build_conditioning(vae, image, frames, width, height, frame_indices, resize_mode,
                                                encode_batch)
        values = {IMAGE_COND: comfy.conds.CONDRegular(image_latent), MASK_COND: comfy.conds.CONDRegular(mask)}
        latent = torch.zeros(frames, 4, height // 8, width // 8, device=comfy.model_management.intermediate_device())
        return io.NodeOutput(with_model_conds(positive, values), with_model_conds(negative, values),
                             {"samples": latent})


def build_conditioning(vae, image, frames, width, height, frame_indices, resize_mode, encode_batch=8):
    """(raw image latent [F, 4, h, w], mask [F, 1, h, w]) with every input checked; errors name the input."""
    if not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise input_error(NODE, "frames", f"{frames} frames; use 1 to {MAX_FRAMES}")
    for name, value in (("width", width), ("height", height)):
        try:
            prep.check_size(int(value), name)
        except AtomoVideoError as e:
            raise input_error(NODE, name, str(e)) from None
        if value > MAX_SIZE:
            raise input_error(NODE, name, f"{name} {value} is larger than {MAX_SIZE}")
    if resize_mode not in prep.RESIZE_MODES:
        raise input_error(NODE, "resize_mode", f"unknown mode '{resize_mode}'; use one of "
                                               f"{', '.join(prep.RESIZE_MODES)}")
    if not isinstance(encode_batch, int) or encode_batch < 1:
        raise input_error(NODE, "encode_batch", f"{encode_batch}; encode at least 1 frame at a time")
    try:
        indices = prep.parse_frame_indices(frame_indices, frames)
    except AtomoVideoError as e:
        raise input_error(NODE, "frame_indices", str(e)) from None
    if not isinstance(image, torch.Tensor):
        raise input_error(NODE, "image", f"expected an IMAGE tensor, got {type(image).__name__}")
    try:
        image = prep.to_rgb(image)
    except AtomoVideoError as e:
        raise input_error(NODE, "image", str(e)) from None
    if image.shape[0] != len(indices):
        raise input_error(
            NODE, "image",
            f"{image.shape[0]} image(s) for {len(indices)} given frame(s) {indices}: give exactly one image per "
            "frame index (list more indices in 'frame_indices', or repeat/select images with RepeatImageBatch / "
            "ImageFromBatch)")
    if image.shape[1] < 8 or image.shape[2] < 8:
        raise input_error(NODE, "image", f"the images are {image.shape[2]}x{image.shape[1]} pixels; they must be "
                                         "at least 8x8")
    if not hasattr(vae, "encode"):
        raise input_error(NODE, "vae", f"expected a VAE, got {type(vae).__name__}")
    latents = encode_in_chunks(vae, image, width, height, resize_mode, encode_batch)
    expected = (len(indices), 4, height // 8, width // 8)
    if tuple(latents.shape) != expected:
        raise input_error(
            NODE, "vae",
            f"this VAE gives latents of shape {list(latents.shape)} for {width}x{height} images; AtomoVideo (SD1.5) "
            f"needs {list(expected)}: use an SD1.5 VAE (4 channels, 8x downscale)")
    return prep.frame_conditioning(latents, indices, frames)
