"""Frame continuation on the host: the long-video loop and the one-step "next segment".

Planning, context hand-over, join and drift control live in `atomo_core.continuation` / `drift_control`
(host-free, tested there); this module supplies the sampling callback of `run_continuation`: VAE encode,
conditioning (`conditioning.with_image_condition`) and one prepared `sampling.PreparedSampling` for all runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch

import comfy.model_management
import comfy.utils
import latent_preview

from ..atomo_core import continuation as cont
from ..atomo_core import drift_control as dc
from ..atomo_core import image_preparation as prep
from ..atomo_core.errors import AtomoVideoError
from . import inputs
from .conditioning import check_latents, decode_in_chunks, encode_in_chunks, with_image_condition
from .inflation import inflation_of
from .sampling import PreparedSampling, SamplingSettings

TARGET_BOTH, TARGET_CONTEXT, TARGET_OUTPUT = "context and output", "context only", "output only"
DRIFT_TARGETS = [TARGET_BOTH, TARGET_CONTEXT, TARGET_OUTPUT]


@dataclass(frozen=True)
class LongVideo:
    """The video to make and how segments hand over (the long-video node's settings)."""
    width: int = 512
    height: int = 512
    total_frames: int = 48
    segment_frames: int = 16
    context_frames: int = 4
    pin_context: bool = True
    drift_strength: float = 1.0
    drift_target: str = TARGET_BOTH
    resize_mode: str = prep.CROP
    decode_batch: int = 16


@dataclass(frozen=True)
class GivenFrames:
    """What the video starts from: a start image, or a video to continue; and the drift reference."""
    image: torch.Tensor | None = None
    given_video: torch.Tensor | None = None
    reference: torch.Tensor | None = None


@dataclass
class SegmentRecord:
    """One finished run, for `on_segment` (tests, benchmarks): what was given, sampled and kept."""
    segment: cont.Segment
    latents: torch.Tensor                 # the run's sampled latents [L, 4, h, w]
    cond_latent: torch.Tensor | None      # image-condition latent (None: text-to-video first run)
    mask: torch.Tensor | None
    pin_error: float | None               # largest change of a pinned latent before it was put back
    images: torch.Tensor | None = None    # the decoded run (image hand-over, drift control on)
    kept: torch.Tensor | None = field(default=None)  # its decoded kept frames (latent hand-over)


def weights_max_frames(model) -> int:
    """Frames per run the loaded AtomoVideo weights support (`atomovideo` attachment); refuses other models."""
    if not hasattr(model, "get_attachment"):
        raise AtomoVideoError("model", f"expected a MODEL, got {type(model).__name__}")
    inflation = inflation_of(model)
    if inflation is None:
        raise AtomoVideoError("model", "this model has no AtomoVideo temporal layers, so the frames per run it "
                              "supports are unknown; load the model through AtomoVideo Loader first")
    return int(inflation.metadata.max_frames)


def drift_settings(strength: float, target: str) -> dc.DriftControl:
    if target not in DRIFT_TARGETS:
        raise AtomoVideoError("drift_target", f"unknown target '{target}'; use one of {DRIFT_TARGETS}")
    return dc.DriftControl(enabled=True, strength=float(strength), apply_to_context=target != TARGET_OUTPUT,
                           apply_to_output=target != TARGET_CONTEXT)


def pinned_latent(image_latent: torch.Tensor, mask: torch.Tensor, pin: bool) -> dict:
    """The LATENT to sample: the given frames' latents in place (zeros elsewhere); with `pin`, a per-frame
    `noise_mask` that is 0 (keep) on the given frames, so KSamplerX0Inpaint holds them at every step and the
    sampled segment reproduces them exactly."""
    out = {"samples": image_latent.clone()}
    if pin:
        out["noise_mask"] = (1.0 - mask).clone()
    return out


def release_patched(model) -> None:
    """Unload (and so unpatch) `model` if ComfyUI holds it loaded: after an interrupted run the shared base
    model must not keep this clone's object patches (temporal layers) applied."""
    mm = comfy.model_management
    for i in range(len(mm.current_loaded_models) - 1, -1, -1):
        loaded = mm.current_loaded_models[i]
        if loaded.model is model:
            loaded.model_unload()
            mm.current_loaded_models.pop(i)
    mm.soft_empty_cache()


def _checked_given(given: GivenFrames, video: LongVideo) -> GivenFrames:
    image, given_video, reference = given.image, given.given_video, given.reference
    if given_video is not None:
        given_video = inputs.check_image(given_video, "given_video")
        if tuple(given_video.shape[1:3]) != (video.height, video.width):
            raise AtomoVideoError("given_video", f"frames of {given_video.shape[2]}x{given_video.shape[1]}, but "
                                  f"the video is {video.width}x{video.height}; set width/height to the given "
                                  "video's size or resize it first")
        if image is not None:
            raise AtomoVideoError("image", "a given video is continued from its last frames; the start image is "
                                  "not used then: disconnect one of them")
    if image is not None:
        image = inputs.check_image(image, "image")
        if image.shape[0] != 1:
            raise AtomoVideoError("image", f"{image.shape[0]} images; give one start image (use 'given_video' "
                                  "to continue several frames)")
    if reference is not None:
        reference = inputs.check_image(reference, "reference")
    return GivenFrames(image, given_video, reference)


class _Runs:
    """The sampling callback of `run_continuation`: one sampled run per call, one progress bar over all."""

    def __init__(self, prepared: PreparedSampling, conditioning: tuple, vae, video: LongVideo, plan,
                 given: GivenFrames, on_segment: Callable | None):
        self.prepared, (self.positive, self.negative), self.vae = prepared, conditioning, vae
        self.video, self.plan, self.given = video, plan, given
        # without drift control, hand the context over as latents (no VAE round trip)
        self.latent_mode = not drift_settings(video.drift_strength, video.drift_target).active
        self.on_segment, self.pending = on_segment, None
        self.pbar = comfy.utils.ProgressBar(prepared.steps * len(plan.segments))
        model = prepared.model
        self.previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)
        self.device = comfy.model_management.intermediate_device()

    def given_latents(self, context):
        """(latents [n, 4, h, w], indices) of the given frames of this run."""
        size, batch = (self.video.width, self.video.height), self.video.decode_batch
        if context is not None:
            frames = context.frames
            if not self.latent_mode:
                frames = encode_in_chunks(self.vae, frames, size, prep.CROP, batch)
            return frames.to(self.device, torch.float32), context.indices
        if self.given.image is not None:
            return encode_in_chunks(self.vae, self.given.image, size, self.video.resize_mode, batch), [0]
        return None, []

    def progress(self, seg: cont.Segment):
        offset = seg.index * self.prepared.steps

        def callback(step, x0, x, total_steps):
            preview = self.previewer.decode_latent_to_preview_image("JPEG", x0) if self.previewer else None
            self.pbar.update_absolute(offset + step + 1, None, preview)
            comfy.model_management.throw_exception_if_processing_interrupted()
        return callback

    def __call__(self, seg: cont.Segment, context) -> torch.Tensor:
        comfy.model_management.throw_exception_if_processing_interrupted()
        L, (w, h) = self.plan.segment_frames, (self.video.width, self.video.height)
        latents, indices = self.given_latents(context)
        if latents is not None:
            check_latents(latents, (w, h))
            cond_latent, mask = prep.frame_conditioning(latents, indices, L)
            pos, neg = with_image_condition(self.positive, self.negative, cond_latent, mask)
            latent = pinned_latent(cond_latent, mask, bool(self.video.pin_context))
        else:  # text-to-video first run
            cond_latent = mask = None
            pos, neg = self.positive, self.negative
            latent = {"samples": torch.zeros(L, 4, h // 8, w // 8, device=self.device)}
        seed = self.prepared.settings.with_seed_offset(seg.index).seed
        samples = self.prepared.sample(pos, neg, latent, seed=seed, callback=self.progress(seg))
        del pos, neg
        pin_error = None
        if "noise_mask" in latent:
            # KSamplerX0Inpaint holds the given frames at every step; only the latent scaling in and out of the
            # model (x 0.18215 and back) and the last step's arithmetic leave float round-off on them. Put the
            # given latents back exactly, so a seam frame is the given one bit for bit.
            keep = latent["noise_mask"][:, 0, 0, 0] == 0
            pin_error = (samples[keep] - cond_latent[keep].to(samples)).abs().max().item()
            samples[keep] = cond_latent[keep].to(samples)
        record = SegmentRecord(seg, samples, cond_latent, mask, pin_error)
        if self.latent_mode:
            self.pending, out = record, samples  # reported once its kept frames are decoded
        else:
            record.images = out = decode_in_chunks(self.vae, samples, self.video.decode_batch)
            self.report(record)
        comfy.model_management.throw_exception_if_processing_interrupted()
        return out

    def report(self, record: SegmentRecord) -> None:
        if self.on_segment is not None:
            self.on_segment(record)

    def join_latent_runs(self, given_video: torch.Tensor | None) -> torch.Tensor:
        """run_continuation with latent hand-over: each run's kept frames are decoded as soon as it is done
        (its latents are then dropped); a given video stays as it is, only its last k frames are encoded."""
        k, batch, size = self.plan.context_frames, self.video.decode_batch, (self.video.width, self.video.height)
        given = None
        if given_video is not None:
            tail = encode_in_chunks(self.vae, given_video[-k:], size, prep.CROP, batch)
            filler = tail.new_zeros(1, *tail.shape[1:]).expand(given_video.shape[0] - k, *tail.shape[1:])
            given = torch.cat([filler, tail])
        decoded = [] if given_video is None else [given_video.to(self.device, torch.float32)]

        def keep_decoded(seg, out):
            decoded.append(decode_in_chunks(self.vae, out[seg.keep_start:seg.keep_stop], batch))
            self.pending.kept = decoded[-1]
            self.report(self.pending)

        cont.run_continuation(self.plan, self, given_video=given, on_segment=keep_decoded)
        return torch.cat(decoded, dim=0)[:self.plan.total_frames]


def run_long_video(model, positive, negative, vae, video: LongVideo, sampling: SamplingSettings,
                   given: GivenFrames = GivenFrames(), on_segment: Callable[[SegmentRecord], None] | None = None
                   ) -> torch.Tensor:
    """The long-video loop: exactly `video.total_frames` frames, segment by segment, in one call.

    `sampling.denoise` is ignored (every run samples from pure noise). `on_segment` sees each finished run."""
    max_frames = weights_max_frames(model)
    inputs.check_video_size(video.width, video.height)
    inputs.check_resize_mode(video.resize_mode)
    inputs.check_batch(video.decode_batch, "decode_batch", "decode")
    given = _checked_given(given, video)
    plan = cont.plan_segments(video.total_frames, video.segment_frames, video.context_frames, max_frames,
                              None if given.given_video is None else given.given_video.shape[0])
    drift = drift_settings(video.drift_strength, video.drift_target)
    prepared = PreparedSampling(model, replace(sampling, denoise=1.0))
    runs = _Runs(prepared, (positive, negative), vae, video, plan, given, on_segment)
    try:
        with torch.no_grad():
            if runs.latent_mode:
                out = runs.join_latent_runs(given.given_video)
            else:
                out = cont.run_continuation(plan, runs, given_video=given.given_video, drift=drift,
                                            reference=given.reference)
    except BaseException:
        release_patched(prepared.model)
        raise
    comfy.model_management.soft_empty_cache()
    return out


@dataclass(frozen=True)
class NextSegment:
    """One continuation step by hand (the Frame Continuation node's settings)."""
    context_frames: int = 4
    new_frames: int = 12
    pin_context: bool = True
    drift_strength: float = 0.0
    encode_batch: int = 8


def next_segment(model, conditioning: tuple, vae, so_far: dict, step: NextSegment) -> tuple:
    """(positive, negative, latent) of the segment after the video `so_far` ({"frames": IMAGE} or
    {"latent": LATENT}, exactly one, plus an optional drift "reference")."""
    k, new = int(step.context_frames), int(step.new_frames)
    L = cont.check_next_segment(k, new, weights_max_frames(model))
    frames, latent = so_far.get("frames"), so_far.get("latent")
    if (frames is None) == (latent is None):
        raise AtomoVideoError("frames", "give the video so far either as 'frames' (IMAGE) or as 'latent' "
                              "(LATENT), exactly one of them")
    batch = inputs.check_batch(step.encode_batch, "encode_batch", "encode")
    settings = drift_settings(step.drift_strength, TARGET_CONTEXT)
    if latent is not None:
        if settings.active:
            raise AtomoVideoError("drift_strength", "drift control works on images; with a LATENT input set "
                                  "drift_strength to 0 or give the video as 'frames'")
        samples = latent.get("samples") if isinstance(latent, dict) else None
        if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
            raise AtomoVideoError("latent", "expected a LATENT with samples [F, 4, h, w] (frames as the batch)")
        ctx = cont.context_for_next_segment(samples, k, L)
        latents = ctx.frames.to(comfy.model_management.intermediate_device(), torch.float32)
    else:
        images = inputs.check_image(frames, "frames")
        inputs.check_image_size(images, "frames")
        ctx = cont.context_for_next_segment(images, k, L)
        context_images = ctx.frames
        if settings.active:
            reference = so_far.get("reference")
            ref = images[:L] if reference is None else inputs.check_image(reference, "reference")
            context_images = dc.apply_map(context_images, dc.segment_map(images[-L:], dc.lab_stats(ref), settings))
        size = (images.shape[2], images.shape[1])
        latents = encode_in_chunks(vae, context_images, size, prep.CROP, batch)
    image_latent, mask = prep.frame_conditioning(latents, ctx.indices, L)
    positive, negative = with_image_condition(*conditioning, image_latent, mask)
    return positive, negative, pinned_latent(image_latent, mask, bool(step.pin_context))
