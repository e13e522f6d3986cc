"""Node `AtomoVideoMetrics`: measure fidelity, consistency, motion and colour drift of a generated video.

Turns "too static", "frame 0 drifts", "colours shift after frame 1" into numbers on the canvas, computed by the
same `atomo_core.metrics` code as the command line, so node and command agree.
"""
from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io, ui

from ..atomo_core.errors import input_error
from ..atomo_core.metrics import report as R
from ..atomo_core.metrics.plots import plot_report

NODE = "AtomoVideoMetrics"


def clip_embedder(clip_vision):
    """image batch (numpy) -> CLIP image embeddings [N, D] from a ComfyUI CLIP_VISION model.

    Only a projected CLIP image embedding is a CLIP similarity space; models without the projection (no
    `visual_projection`, e.g. DINOv2, SigLIP as ComfyUI runs it, or a CLIP config without projection_dim) are
    refused instead of giving numbers that mean something else.
    """
    model = getattr(clip_vision, "model", None)
    if model is None or not hasattr(clip_vision, "encode_image"):
        raise input_error(NODE, "clip_vision", "this is not a CLIP vision model; connect the output of "
                                               "Load CLIP Vision, or leave the input empty to skip CLIP metrics.")
    if not isinstance(getattr(model, "visual_projection", None), torch.nn.Module):
        raise input_error(NODE, "clip_vision", "this CLIP vision model has no projection layer, so it gives no CLIP "
                                               "image embedding (image_embeds) to compare. Use a CLIP vision model "
                                               "with projection (e.g. CLIP ViT-H/14 or ViT-L/14 as used by "
                                               "IP-Adapter), or leave the input empty to skip the CLIP metrics.")

    def embed(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():  # encode_image does not disable autograd itself
            out = clip_vision.encode_image(torch.from_numpy(np.ascontiguousarray(images)), crop=True)
        e = getattr(out, "image_embeds", None)
        if e is None or e.ndim != 2:
            raise input_error(NODE, "clip_vision", "the model returned no per-image embedding (image_embeds); "
                                                   "use a CLIP vision model with projection.")
        return e.detach().float().cpu().numpy()

    return embed


def measure(video, image, clip_vision=None) -> tuple[dict, np.ndarray]:
    """Report and plot image for the node's inputs (also used by tests to compare with the command)."""
    v, im = R.check_inputs(video, image, NODE, video_input="video", image_input="image")
    embed = clip_embedder(clip_vision) if clip_vision is not None else None
    rep = R.evaluate(v, im, embed=embed)
    return rep, plot_report(rep)


class AtomoVideoMetrics(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE,
            display_name="AtomoVideo Metrics",
            category="AtomoVideo",
            description="Scores a video against the image it was generated from, as the AtomoVideo paper "
                        "evaluates (AIGCBench-style): first-frame MSE/PSNR/SSIM, SSIM and CLIP similarity to "
                        "the input over time, adjacent-frame consistency and flow warp error, motion intensity "
                        "(flow-square-mean) and L*a*b* colour/brightness drift. Shows plots on the canvas.",
            inputs=[
                io.Image.Input("video", tooltip="The generated video as an image batch (e.g. VAE Decode output), "
                                                "at least 2 frames."),
                io.Image.Input("image", tooltip="The input image the video was generated from: one image of the "
                                                "same width and height as the video frames."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Optional CLIP vision model (Load CLIP Vision) with projection. When "
                                            "connected, CLIP similarity of every frame to the input and of "
                                            "adjacent frames is added."),
            ],
            outputs=[
                io.String.Output(display_name="report_json", tooltip="All metrics, per frame and summarised, as "
                                                                      "JSON (same format as the command's --json)."),
                io.String.Output(display_name="summary", tooltip="The headline numbers as readable text."),
                io.Image.Output(display_name="plots", tooltip="Plots: SSIM/CLIP to the input, adjacent-frame "
                                                              "consistency, flow magnitude and L* brightness over "
                                                              "frames."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, video, image, clip_vision=None) -> io.NodeOutput:
        rep, plot = measure(video, image, clip_vision)
        summary = R.summary_text(rep)
        plot_t = torch.from_numpy(plot)[None]
        shown = ui.PreviewImage(plot_t, cls=cls).as_dict()
        shown["text"] = (summary,)
        return io.NodeOutput(R.to_json(rep), summary, plot_t, ui=shown)
