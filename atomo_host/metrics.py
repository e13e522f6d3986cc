"""Scoring a video on the host: the node's inputs through `atomo_core.metrics`, with CLIP similarity from a
ComfyUI CLIP vision model. The command (`python -m atomo_core.metrics`) runs the same `evaluate`."""
from __future__ import annotations

import numpy as np
import torch

from ..atomo_core.errors import AtomoVideoError
from ..atomo_core.metrics import report as R
from ..atomo_core.metrics.plots import plot_report


def clip_embedder(clip_vision):
    """image batch (numpy) -> CLIP image embeddings [N, D] from a ComfyUI CLIP_VISION model.

    Only a projected CLIP image embedding is a CLIP similarity space; models without the projection (no
    `visual_projection`, e.g. DINOv2, SigLIP as ComfyUI runs it, or a CLIP config without projection_dim) are
    refused instead of giving numbers that mean something else.
    """
    model = getattr(clip_vision, "model", None)
    if model is None or not hasattr(clip_vision, "encode_image"):
        raise AtomoVideoError("clip_vision", "this is not a CLIP vision model; connect the output of "
                                               "Load CLIP Vision, or leave the input empty to skip CLIP metrics.")
    if not isinstance(getattr(model, "visual_projection", None), torch.nn.Module):
        raise AtomoVideoError("clip_vision", "this CLIP vision model has no projection layer, so it gives no CLIP "
                                               "image embedding (image_embeds) to compare. Use a CLIP vision model "
                                               "with projection (e.g. CLIP ViT-H/14 or ViT-L/14 as used by "
                                               "IP-Adapter), or leave the input empty to skip the CLIP metrics.")

    def embed(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():  # encode_image does not disable autograd itself
            out = clip_vision.encode_image(torch.from_numpy(np.ascontiguousarray(images)), crop=True)
        e = getattr(out, "image_embeds", None)
        if e is None or e.ndim != 2:
            raise AtomoVideoError("clip_vision", "the model returned no per-image embedding (image_embeds); "
                                                   "use a CLIP vision model with projection.")
        return e.detach().float().cpu().numpy()

    return embed


def measure(video, image, clip_vision=None) -> tuple[dict, np.ndarray]:
    """Report and plot image for the node's inputs (also used by tests to compare with the command)."""
    v, im = R.check_inputs(video, image, video_input="video", image_input="image")
    embed = clip_embedder(clip_vision) if clip_vision is not None else None
    rep = R.evaluate(v, im, embed=embed)
    return rep, plot_report(rep)
