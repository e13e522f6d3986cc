"""The image tokens of the high-level injection: an IP-Adapter projection (from the AtomoVideo file or an
IP-Adapter SD1.5 file in `models/ipadapter/`) applied to a CLIP vision model's output."""
from __future__ import annotations

import torch

from ..atomo_core import image_projection as ipj
from ..atomo_core.errors import AtomoVideoError, in_field
from . import model_files
from .inflation import inflation_of

FOLDER = "ipadapter"
FROM_ATOMOVIDEO = "from AtomoVideo weights"


def projection_choices() -> list[str]:
    return [FROM_ATOMOVIDEO] + model_files.file_names((FOLDER,))


def _from_inflation(model) -> tuple[ipj.IPAdapterWeights, str]:
    inflation = inflation_of(model)
    if inflation is None:
        raise AtomoVideoError("projection", "the model carries no AtomoVideo weights; load them with "
                              "AtomoVideoLoader first, or choose an IP-Adapter SD1.5 file from "
                              f"{model_files.folder_paths_of((FOLDER,))}")
    name = inflation.file_name
    if not inflation.image_proj:
        raise AtomoVideoError("projection", f"the AtomoVideo file '{name}' has no image projection "
                              "('image_proj.*' tensors); choose an IP-Adapter SD1.5 file instead")
    weights = ipj.load_ipadapter(*ipj.split_atomovideo_image_proj(inflation.image_proj, name), name)
    tokens = inflation.metadata.image_tokens
    if tokens and tokens != weights.tokens:
        raise AtomoVideoError("projection", f"'{name}' declares {tokens} image tokens, but its projection "
                              f"makes {weights.tokens}; the file is inconsistent")
    return weights, name


def load_projection(model, projection: str) -> tuple[ipj.IPAdapterWeights, str]:
    """(weights, file name) of the `projection` choice; errors are the `projection` input's."""
    with in_field("projection"):
        if projection == FROM_ATOMOVIDEO:
            return _from_inflation(model)
        return ipj.load_ipadapter_file(model_files.file_path((FOLDER,), projection, "projection")), projection


def clip_features(clip_vision, image: torch.Tensor, which: str) -> torch.Tensor:
    out = clip_vision.encode_image(image, crop=True)
    return out[which].float()


def blank_image(clip_vision) -> torch.Tensor:
    """The CLIP mean colour: zero after CLIP normalisation, i.e. IP-Adapter's `zeros_like(clip_image)`."""
    size = int(getattr(clip_vision, "image_size", 224))
    mean = torch.tensor(getattr(clip_vision, "image_mean", [0.48145466, 0.4578275, 0.40821073]))
    return mean.view(1, 1, 1, 3).expand(1, size, size, 3).contiguous()


def image_tokens(clip_vision, weights: ipj.IPAdapterWeights, image: torch.Tensor, name: str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond tokens [N*T, cross], uncond tokens [N*T, cross]) for N images; widths checked."""
    if not hasattr(clip_vision, "encode_image"):
        raise AtomoVideoError("clip_vision", f"expected a CLIP vision model, got {type(clip_vision).__name__}")
    features = clip_features(clip_vision, image, weights.clip_input)
    with in_field("clip_vision"):
        ipj.check_clip_width(weights, features.shape[-1], name)
    if weights.clip_input == ipj.IMAGE_EMBEDS:
        blank = torch.zeros_like(features[:1])  # IP-Adapter base: the projection of a zero embedding
    else:
        blank = clip_features(clip_vision, blank_image(clip_vision), weights.clip_input)
    proj = weights.projection
    device = next(proj.parameters()).device
    with torch.no_grad():
        cond = proj(features.to(device))
        uncond = proj(blank.to(device))
    cond = cond.reshape(-1, cond.shape[-1])
    uncond = uncond.reshape(-1, uncond.shape[-1]).repeat(image.shape[0], 1)
    return cond, uncond
