"""The image condition's way through the host: `model_conds` in, UNet input channels out.

Nodes put the raw image latent `[F, 4, h, w]` and the frame mask `[F, 1, h, w]` (1 = given) into the
conditioning as `model_conds` (`atomo_image`, `atomo_mask`); the host batches them with cond/uncond and hands them
to the APPLY_MODEL wrapper installed by `install_concat`, which lays them out as the extra input channels the
weights declare. What the weights declare is read once, into a frozen `ConcatSpec`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import comfy.conds
import comfy.model_management
import comfy.patcher_extension

from ..atomo_core import image_preparation as prep
from ..atomo_core.conditioning_layout import build_concat, parse_layout
from ..atomo_core.errors import AtomoVideoError, in_field
from ..atomo_core.pia_presets import frame_mask_to_affinity
from ..atomo_core.weight_format import AtomoVideoMetadata
from . import inputs

KEY = "atomovideo"  # wrapper key of this pack
IMAGE_COND, MASK_COND = "atomo_image", "atomo_mask"  # model_conds carried by the conditioning


@dataclass(frozen=True)
class ConcatSpec:
    """How the weights want the extra input channels: built once from the metadata, read on every UNet call."""
    layout: tuple[tuple[str, int], ...]    # parsed channel groups, noisy latent first
    mask_polarity: str = "1=given"
    image_on_all_frames: bool = False      # PIA: every frame gets the given image latent
    affinity_preset: str | None = None     # PIA: a binary frame mask becomes this preset's affinity

    @classmethod
    def from_metadata(cls, meta: AtomoVideoMetadata, affinity_preset: str | None = None) -> "ConcatSpec":
        return cls(parse_layout(meta.channel_layout), meta.mask_polarity, meta.image_on_all_frames,
                   affinity_preset)

    def needs_frames(self) -> bool:
        return self.image_on_all_frames or bool(self.affinity_preset)


def frames_in_batch(x: torch.Tensor, transformer_options: dict) -> int:
    """Frames per video in this UNet call: the batch holds one F-frame chunk per cond/uncond entry."""
    chunks = len(transformer_options.get("cond_or_uncond") or [0])
    if x.shape[0] % chunks:
        raise RuntimeError(f"AtomoVideo: batch of {x.shape[0]} does not split into {chunks} videos")
    return x.shape[0] // chunks


def install_concat(patcher, spec: ConcatSpec, latent_format) -> None:
    """An APPLY_MODEL wrapper on `patcher` (a clone) that builds `c_concat` from the model_conds."""

    def concat_wrapper(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        image = kwargs.pop(IMAGE_COND, None)
        mask = kwargs.pop(MASK_COND, None)
        if c_concat is None:
            if image is not None:
                image = latent_format.process_in(image.to(x.device, x.dtype))
            frames = frames_in_batch(x, transformer_options) if spec.needs_frames() else None
            if spec.affinity_preset and mask is not None:
                mask = frame_mask_to_affinity(mask, frames, spec.affinity_preset)
            c_concat = build_concat(spec.layout, x, image, mask, spec.mask_polarity,
                                    spec.image_on_all_frames, frames)
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, KEY, concat_wrapper)


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


def with_image_condition(positive, negative, image_latent: torch.Tensor, mask: torch.Tensor):
    """(positive, negative) carrying the image latent and frame mask; both get the same, as in training."""
    values = {IMAGE_COND: comfy.conds.CONDRegular(image_latent), MASK_COND: comfy.conds.CONDRegular(mask)}
    return with_model_conds(positive, values), with_model_conds(negative, values)


def encode_in_chunks(vae, image: torch.Tensor, size: tuple[int, int], mode: str, chunk: int) -> torch.Tensor:
    """Raw VAE latents of `image` [N, H, W, 3], resized to `size` (width, height), `chunk` frames at a time."""
    parts = []
    for start, stop in prep.chunks(image.shape[0], chunk):
        pixels = prep.resize(image[start:stop], size[0], size[1], mode)
        latent = vae.encode(pixels[..., :3])
        parts.append(latent.to(comfy.model_management.intermediate_device(), torch.float32))
        del pixels
    return torch.cat(parts, dim=0)


def decode_in_chunks(vae, latents: torch.Tensor, chunk: int) -> torch.Tensor:
    """IMAGE [F, H, W, 3] of raw latents [F, 4, h, w], decoded `chunk` frames at a time."""
    parts = []
    for start, stop in prep.chunks(latents.shape[0], chunk):
        images = vae.decode(latents[start:stop])
        if images.ndim == 5:  # video VAEs give [B, T, H, W, C]
            images = images.reshape(-1, *images.shape[-3:])
        parts.append(images.to(comfy.model_management.intermediate_device(), torch.float32))
        del images
    return torch.cat(parts, dim=0)


def check_latents(latents: torch.Tensor, size: tuple[int, int]) -> None:
    """Refuse a VAE whose latents are not SD1.5's [4, height/8, width/8]."""
    w, h = size
    if tuple(latents.shape[1:]) != (4, h // 8, w // 8):
        raise AtomoVideoError("vae", f"this VAE gives latents of shape {list(latents.shape)} for {w}x{h} images; "
                              f"AtomoVideo (SD1.5) needs {[latents.shape[0], 4, h // 8, w // 8]}: use an SD1.5 VAE "
                              "(4 channels, 8x downscale)")


@dataclass(frozen=True)
class ImageConditioning:
    """The video to make and where the given images go (the image-conditioning node's settings)."""
    frames: int = 16
    width: int = 512
    height: int = 512
    frame_indices: str = "0"
    resize_mode: str = prep.CROP
    encode_batch: int = 8


def build_conditioning(vae, image, spec: ImageConditioning) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw image latent [F, 4, h, w], mask [F, 1, h, w]) with every input checked; errors name the input."""
    if not isinstance(spec.frames, int) or not 1 <= spec.frames <= inputs.MAX_FRAMES:
        raise AtomoVideoError("frames", f"{spec.frames} frames; use 1 to {inputs.MAX_FRAMES}")
    size = inputs.check_video_size(spec.width, spec.height)
    inputs.check_resize_mode(spec.resize_mode)
    inputs.check_batch(spec.encode_batch, "encode_batch", "encode")
    with in_field("frame_indices"):
        indices = prep.parse_frame_indices(spec.frame_indices, spec.frames)
    image = inputs.check_image(image, "image")
    if image.shape[0] != len(indices):
        raise AtomoVideoError(
            "image", f"{image.shape[0]} image(s) for {len(indices)} given frame(s) {indices}: give exactly one "
            "image per frame index (list more indices in 'frame_indices', or repeat/select images with "
            "RepeatImageBatch / ImageFromBatch)")
    if image.shape[1] < 8 or image.shape[2] < 8:
        raise AtomoVideoError("image", f"the images are {image.shape[2]}x{image.shape[1]} pixels; they must be at "
                                       "least 8x8")
    if not hasattr(vae, "encode"):
        raise AtomoVideoError("vae", f"expected a VAE, got {type(vae).__name__}")
    latents = encode_in_chunks(vae, image, size, spec.resize_mode, spec.encode_batch)
    check_latents(latents, size)
    return prep.frame_conditioning(latents, indices, spec.frames)


def condition_video(conditioning: tuple, vae, image, spec: ImageConditioning) -> tuple:
    """(positive, negative, empty video LATENT): AtomoVideo's low-level image injection for one sampling run."""
    image_latent, mask = build_conditioning(vae, image, spec)
    latent = torch.zeros(spec.frames, 4, spec.height // 8, spec.width // 8,
                         device=comfy.model_management.intermediate_device())
    return (*with_image_condition(*conditioning, image_latent, mask), {"samples": latent})
