"""Node `AtomoVideoMetrics`: measure fidelity, consistency, motion and colour drift of a generated video.

Turns "too static", "frame 0 drifts", "colours shift after frame 1" into numbers on the canvas, computed by the
same `atomo_core.metrics` code as the command line, so node and command agree.
"""
from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..atomo_core.metrics import report as R
from ..atomo_host.metrics import measure
from .base import AtomoNode

NODE = "AtomoVideoMetrics"


class AtomoVideoMetrics(AtomoNode):
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
