"""Frame continuation nodes (long videos by iterative frame prediction, with drift control).

- `AtomoVideoContinue` ("AtomoVideo Frame Continuation"): one step by hand. From the frames generated so far
  (IMAGE, or LATENT to skip the VAE round trip) it makes the conditioning and the latent of the next segment,
  whose first k frames are the last k frames given (image latent + mask 1 there, optionally pinned with
  `noise_mask`). Sample it with AtomoVideo Sampler, decode, and join with `AtomoVideoJoinSegments`.
- `AtomoVideoJoinSegments`: the video so far + the next segment, without repeating the k overlap frames.
- `AtomoVideoLongVideo`: the whole loop in one node (`atomo_host.continuation.run_long_video`): N frames,
  segment by segment, in one queue run, one progress bar over all segments' steps, interruption checked at every
  step and between segments, each segment's conditioning, noise and latents released before the next.
"""
from __future__ import annotations

from comfy_api.latest import io

from ..atomo_core import continuation as cont
from ..atomo_core import image_preparation as prep
from ..atomo_core import noise_schedules as ns
from ..atomo_host.continuation import (DRIFT_TARGETS, TARGET_BOTH, GivenFrames, LongVideo, NextSegment,
                                       next_segment, run_long_video)
from ..atomo_host import file_checks
from ..atomo_host.inputs import MAX_SIZE, MAX_TOTAL_FRAMES, split_settings
from ..atomo_host.sampling import SamplingSettings
from ..atomo_host.sigmas import DEFAULT_SAMPLER, MAX_STEPS, SAMPLERS, SCHEDULERS, TRAILING
from .base import AtomoNode

CONTINUE = "AtomoVideoContinue"
LONG = "AtomoVideoLongVideo"
JOIN = "AtomoVideoJoinSegments"


class AtomoVideoContinue(AtomoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=CONTINUE,
            display_name="AtomoVideo Frame Continuation",
            category="AtomoVideo",
            description="Makes the next segment of a video: its first context_frames frames are the last frames "
                        "given (image latent + frame mask, optionally pinned), the rest is to be sampled. Sample "
                        "the latent with AtomoVideo Sampler, decode it and join it with AtomoVideo Join Segments.",
            inputs=[
                io.Model.Input("model", tooltip="The AtomoVideo model (from AtomoVideo Loader); read only, to "
                               "check the segment length against the frames its weights support."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning (text); the context frames are "
                                      "added to it as the image condition."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning; it gets the same image "
                                      "condition, as AtomoVideo was trained with."),
                io.Vae.Input("vae", tooltip="The SD1.5 VAE that encodes the context frames (not used with a "
                             "LATENT input)."),
                io.Int.Input("context_frames", default=4, min=1, max=MAX_TOTAL_FRAMES,
                             tooltip="k: how many of the last frames given become frames 0..k-1 of the next "
                                     "segment. More frames give smoother seams but fewer new frames per run."),
                io.Int.Input("new_frames", default=12, min=1, max=MAX_TOTAL_FRAMES,
                             tooltip="Frames the next segment adds; the segment has context_frames + new_frames "
                                     "frames, at most what the weights support (usually 16)."),
                io.Boolean.Input("pin_context", default=True,
                                 tooltip="Hold the context frames fixed during sampling (per-frame noise_mask), so "
                                         "the segment's first frames are exactly the given ones in latent "
                                         "space. Off: they are only conditioned on and may change slightly."),
                io.Image.Input("frames", optional=True,
                               tooltip="The video so far as IMAGE (frames are the batch; sides multiples of 8). "
                                       "Give this or 'latent', not both."),
                io.Latent.Input("latent", optional=True,
                                tooltip="The video so far as LATENT [F, 4, h, w], e.g. a sampler's output: no "
                                        "round trip through the VAE. Give this or 'frames', not both."),
                io.Float.Input("drift_strength", default=0.0, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="Colour/brightness drift correction of the context frames (IMAGE input "
                                       "only): 0 = off (bit-identical), 1 = the context's CIELAB mean and "
                                       "contrast, taken over the last segment_frames frames given, matched to "
                                       "the reference."),
                io.Image.Input("reference", optional=True,
                               tooltip="Drift reference (e.g. the input image or the first segment); default: "
                                       "the first context_frames + new_frames frames given."),
                io.Int.Input("encode_batch", default=8, min=1, max=256, optional=True,
                             tooltip="Frames VAE-encoded at a time."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="Positive conditioning of the next "
                                       "segment (context latents + frame mask)."),
                io.Conditioning.Output(display_name="negative", tooltip="Negative conditioning of the next "
                                       "segment."),
                io.Latent.Output(display_name="latent", tooltip="The next segment's latent: context frames in "
                                 "place (pinned by noise_mask with pin_context), the new frames to sample."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, vae, frames=None, latent=None, reference=None,
                **step) -> io.NodeOutput:
        so_far = {"frames": frames, "latent": latent, "reference": reference}
        return io.NodeOutput(*next_segment(model, (positive, negative), vae, so_far, NextSegment(**step)))


class AtomoVideoJoinSegments(AtomoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=JOIN,
            display_name="AtomoVideo Join Segments",
            category="AtomoVideo",
            description="Appends a continued segment to the video so far, dropping the segment's first "
                        "context_frames frames (they reproduce the video's last frames), so no frame is repeated "
                        "at the seam.",
            inputs=[
                io.Image.Input("video", tooltip="The video so far (IMAGE, frames as the batch)."),
                io.Image.Input("segment", tooltip="The decoded next segment, made from AtomoVideo Frame "
                               "Continuation's latent; its first context_frames frames are the overlap."),
                io.Int.Input("context_frames", default=4, min=1, max=MAX_TOTAL_FRAMES,
                             tooltip="The context_frames used for the segment (the overlap to drop)."),
            ],
            outputs=[io.Image.Output(display_name="video", tooltip="video + segment[context_frames:].")],
        )

    @classmethod
    def execute(cls, video, segment, context_frames) -> io.NodeOutput:
        return io.NodeOutput(cont.append_segment(video, segment, context_frames))


class AtomoVideoLongVideo(AtomoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=LONG,
            display_name="AtomoVideo Long Video",
            category="AtomoVideo",
            description="Generates total_frames frames segment by segment (frame continuation) in one run: each "
                        "segment starts from the previous one's last context_frames frames. Optional drift control "
                        "keeps colour and brightness on a reference.",
            inputs=[
                io.Model.Input("model", tooltip="The AtomoVideo model (from AtomoVideo Loader)."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning (text) for every segment."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning for every segment."),
                io.Vae.Input("vae", tooltip="The SD1.5 VAE: encodes the start image / context frames, decodes the "
                             "segments."),
                io.Int.Input("width", default=512, min=8, max=MAX_SIZE, step=8,
                             tooltip="Video width in pixels (multiple of 8)."),
                io.Int.Input("height", default=512, min=8, max=MAX_SIZE, step=8,
                             tooltip="Video height in pixels (multiple of 8)."),
                io.Int.Input("total_frames", default=48, min=1, max=MAX_TOTAL_FRAMES,
                             tooltip="Frames of the final video, including a given video's frames; exactly this "
                                     "many come out."),
                io.Int.Input("segment_frames", default=16, min=2, max=MAX_TOTAL_FRAMES,
                             tooltip="Frames per sampling run; at most what the weights support (usually 16). "
                                     "Every run samples this many; the last run's unneeded tail is dropped."),
                io.Int.Input("context_frames", default=4, min=1, max=MAX_TOTAL_FRAMES,
                             tooltip="k: frames of the previous segment given to each next one (mask 1); "
                                     "1 .. segment_frames - 1."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of segment 1; segment i uses seed + i - 1."),
                io.Int.Input("steps", default=25, min=1, max=MAX_STEPS, tooltip="Sampling steps per segment."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale (1 = off)."),
                io.Float.Input("cfg_rescale", default=ns.DEFAULT_CFG_RESCALE, min=0.0, max=1.0, step=0.01,
                               tooltip="CFG rescale phi, as in AtomoVideo Sampler (0 = off)."),
                io.Combo.Input("sampler_name", options=SAMPLERS, default=DEFAULT_SAMPLER,
                               tooltip="ComfyUI sampler; the same choices and refusals as AtomoVideo Sampler."),
                io.Combo.Input("scheduler", options=SCHEDULERS, default=TRAILING,
                               tooltip="Timestep spacing; 'trailing' for zero-SNR AtomoVideo weights."),
                io.Boolean.Input("pin_context", default=True,
                                 tooltip="Hold given frames (start image, context frames) fixed while sampling "
                                         "(per-frame noise_mask): each segment's first frames are exactly the "
                                         "given latents."),
                io.Float.Input("drift_strength", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="Colour/brightness drift control: each segment's CIELAB mean and contrast "
                                       "matched to the reference. 0 = off: the output is bit-identical to plain "
                                       "chaining, and context is handed over as latents (no VAE round trip). "
                                       "Lower it for scenes that should change colour."),
                io.Combo.Input("drift_target", options=DRIFT_TARGETS, default=TARGET_BOTH,
                               tooltip="Correct the frames given to the next segment (stops drift compounding), "
                                       "the segment's frames in the video, or both."),
                io.Image.Input("image", optional=True,
                               tooltip="Start image (frame 0 of segment 1). Without it and without a given video "
                                       "segment 1 is text-to-video."),
                io.Image.Input("given_video", optional=True,
                               tooltip="A video to continue (width x height); it stays unchanged as the start of "
                                       "the result, every segment has context."),
                io.Image.Input("reference", optional=True,
                               tooltip="Drift reference (e.g. the start image); default: the first segment, or "
                                       "the first segment_frames frames of the given video."),
                io.Combo.Input("resize_mode", options=list(prep.RESIZE_MODES), default=prep.CROP, optional=True,
                               tooltip="How the start image is fitted to width x height."),
                io.Int.Input("decode_batch", default=16, min=1, max=256, optional=True,
                             tooltip="Frames VAE-decoded (and encoded) at a time."),
            ],
            outputs=[io.Image.Output(display_name="video", tooltip="Exactly total_frames frames, seams without "
                                     "repeated or missing frames.")],
        )

    @classmethod
    def validate_inputs(cls, sampler_name, scheduler, drift_target, resize_mode=None) -> bool | str:
        return file_checks.choices(cls, sampler_name=sampler_name, scheduler=scheduler, drift_target=drift_target,
                                   resize_mode=resize_mode)

    @classmethod
    def execute(cls, model, positive, negative, vae, **settings) -> io.NodeOutput:
        video, sampling, given = split_settings(settings, LongVideo, SamplingSettings, GivenFrames)
        return io.NodeOutput(run_long_video(model, positive, negative, vae, video, sampling, given))
