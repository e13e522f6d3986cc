"""Frame continuation (issue 5): long videos by iterative frame prediction, with drift control.

- `AtomoVideoContinue` ("AtomoVideo Frame Continuation"): one step by hand. From the frames generated so far
  (IMAGE, or LATENT to skip the VAE round trip) it makes the conditioning and the latent of the next segment,
  whose first k frames are the last k frames given (image latent + mask 1 there, optionally pinned with
  `noise_mask`). Sample it with AtomoVideo Sampler, decode, and join with `AtomoVideoJoinSegments`.
- `AtomoVideoJoinSegments`: the video so far + the next segment, without repeating the k overlap frames.
- `AtomoVideoLongVideo`: the whole loop in one node: N frames, segment by segment, in one queue run, one
  progress bar over all segments' steps, interruption checked at every step and between segments, each
  segment's conditioning, noise and latents released before the next.

Planning, context hand-over, join and drift control live in `atomo_core.continuation` / `drift_control`
(host-free, tested there); this module wraps VAE encode, conditioning (the image-conditioning node's own
functions) and sampling (ComfyUI's `comfy.sample.sample_custom` with the sampler node's sigmas, CFG rescale and
refusals) into the sampling callback of `run_continuation`.
"""
from __future__ import annotations

import torch

import comfy.conds
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..atomo_core import continuation as cont
from ..atomo_core import drift_control as dc
from ..atomo_core import image_preparation as prep
from ..atomo_core import noise_schedules as ns
from ..atomo_core.errors import AtomoVideoError, input_error
from . import sampling_glue as glue
from .image_conditioning_node import encode_in_chunks, with_model_conds
from .sampler_node import DEFAULT_SAMPLER, MAX_STEPS, SAMPLERS, SCHEDULERS, TRAILING, validated_sigmas
from .unet_inflation import IMAGE_COND, MASK_COND, inflation_of

CONTINUE = "AtomoVideoContinue"
LONG = "AtomoVideoLongVideo"
JOIN = "AtomoVideoJoinSegments"
MAX_TOTAL_FRAMES = 100000
MAX_SIZE = 8192

TARGET_BOTH, TARGET_CONTEXT, TARGET_OUTPUT = "context and output", "context only", "output only"
DRIFT_TARGETS = [TARGET_BOTH, TARGET_CONTEXT, TARGET_OUTPUT]


# --- shared helpers ----------------------------------------------------------------------------------------

def _renamed(error: AtomoVideoError, node: str) -> AtomoVideoError:
    """A core error (phrased for AtomoVideoContinue) as an error of `node` (same input names)."""
    text = str(error)
    for prefix in (f"{CONTINUE}, ", "AtomoVideoImageConditioning, "):
        if text.startswith(prefix):
            return AtomoVideoError(f"{node}, {text[len(prefix):]}")
    return error


def weights_max_frames(model, node: str) -> int:
    """Frames per run the loaded AtomoVideo weights support (`atomovideo` attachment); refuses other models."""
    if not hasattr(model, "get_attachment"):
        raise input_error(node, "model", f"expected a MODEL, got {type(model).__name__}")
    inflation = inflation_of(model)
    if inflation is None:
        raise input_error(node, "model", "this model has no AtomoVideo temporal layers, so the frames per run "
                          "it supports are unknown; load the model through AtomoVideo Loader first")
    return int(inflation.metadata.max_frames)


def drift_settings(strength: float, target: str, node: str) -> dc.DriftControl:
    if target not in DRIFT_TARGETS:
        raise input_error(node, "drift_target", f"unknown target '{target}'; use one of {DRIFT_TARGETS}")
    try:
        return dc.DriftControl(enabled=True, strength=float(strength), apply_to_context=target != TARGET_OUTPUT,
                               apply_to_output=target != TARGET_CONTEXT)
    except AtomoVideoError as e:
        raise _renamed(e, node) from None


def check_image(image, node: str, name: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise input_error(node, name, f"expected an IMAGE tensor, got {type(image).__name__}")
    try:
        return prep.to_rgb(image)
    except AtomoVideoError as e:
        raise input_error(node, name, str(e)) from None


def pinned_latent(image_latent: torch.Tensor, mask: torch.Tensor, pin: bool) -> dict:
    """The LATENT to sample: the given frames' latents in place (zeros elsewhere); with `pin`, a per-frame
    `noise_mask` that is 0 (keep) on the given frames, so KSamplerX0Inpaint holds them at every step and the
    sampled segment reproduces them exactly."""
    out = {"samples": image_latent.clone()}
    if pin:
        out["noise_mask"] = (1.0 - mask).clone()
    return out


def decode_in_chunks(vae, latents: torch.Tensor, chunk: int) -> torch.Tensor:
    parts = []
    for start, stop in prep.chunks(latents.shape[0], chunk):
        images = vae.decode(latents[start:stop])
        if images.ndim == 5:  # video VAEs give [B, T, H, W, C]
            images = images.reshape(-1, *images.shape[-3:])
        parts.append(images.to(comfy.model_management.intermediate_device(), torch.float32))
        del images
    return torch.cat(parts, dim=0)


def sampling_sigmas(node: str, model, steps: int, sampler_name: str, scheduler: str) -> torch.Tensor:
    """The sigmas of a full (denoise 1) run, with the same refusals as AtomoVideo Sampler."""
    return validated_sigmas(node, model, sampler_name, scheduler, steps, 1.0)


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


# --- AtomoVideoContinue ------------------------------------------------------------------------------------

class AtomoVideoContinue(io.ComfyNode):
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
    def execute(cls, model, positive, negative, vae, context_frames, new_frames, pin_context=True, frames=None,
                latent=None, drift_strength=0.0, reference=None, encode_batch=8) -> io.NodeOutput:
        node = CONTINUE
        max_frames = weights_max_frames(model, node)
        k, new = int(context_frames), int(new_frames)
        if k < 1:
            raise input_error(node, "context_frames", f"{k} context frames: at least 1 is needed")
        if new < 1:
            raise input_error(node, "new_frames", f"{new} new frames: the segment must add at least 1 frame")
        L = k + new
        if k >= max_frames:
            raise input_error(node, "context_frames", f"{k} context frames, but the loaded weights handle at most "
                              f"{max_frames} frames per run, and a segment needs at least one new frame; use at "
                              f"most {max_frames - 1}")
        if L > max_frames:
            raise input_error(node, "new_frames", f"{k} context + {new} new = {L} frames per segment, but the "
                              f"loaded weights handle at most {max_frames}; use at most {max_frames - k} new "
                              "frames")
        if (frames is None) == (latent is None):
            raise input_error(node, "frames", "give the video so far either as 'frames' (IMAGE) or as 'latent' "
                              "(LATENT), exactly one of them")
        if not isinstance(encode_batch, int) or encode_batch < 1:
            raise input_error(node, "encode_batch", f"{encode_batch}; encode at least 1 frame at a time")
        settings = drift_settings(drift_strength, TARGET_CONTEXT, node)
        if latent is not None:
            if settings.active:
                raise input_error(node, "drift_strength", "drift control works on images; with a LATENT input "
                                  "set drift_strength to 0 or give the video as 'frames'")
            samples = latent.get("samples") if isinstance(latent, dict) else None
            if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
                raise input_error(node, "latent", "expected a LATENT with samples [F, 4, h, w] (frames as the "
                                  "batch)")
            try:
                ctx = cont.context_for_next_segment(samples, k, L)
            except AtomoVideoError as e:
                raise _renamed(e, node) from None
            latents = ctx.frames.to(comfy.model_management.intermediate_device(), torch.float32)
        else:
            images = check_image(frames, node, "frames")
            h, w = images.shape[1], images.shape[2]
            for name, value in (("width", w), ("height", h)):
                try:
                    prep.check_size(int(value), f"the frames' {name}")
                except AtomoVideoError as e:
                    raise input_error(node, "frames", f"{e} (resize the frames first)") from None
            try:
                ctx = cont.context_for_next_segment(images, k, L)
            except AtomoVideoError as e:
                raise _renamed(e, node) from None
            context_images = ctx.frames
            if settings.active:
                ref = images[:L] if reference is None else check_image(reference, node, "reference")
                lab_map = dc.segment_map(images[-L:], dc.lab_stats(ref), settings)
                context_images = dc.apply_map(context_images, lab_map)
            latents = encode_in_chunks(vae, context_images, w, h, prep.CROP, encode_batch)
        image_latent, mask = prep.frame_conditioning(latents, ctx.indices, L)
        values = {IMAGE_COND: comfy.conds.CONDRegular(image_latent), MASK_COND: comfy.conds.CONDRegular(mask)}
        return io.NodeOutput(with_model_conds(positive, values), with_model_conds(negative, values),
                             pinned_latent(image_latent, mask, bool(pin_context)))


# --- AtomoVideoJoinSegments --------------------------------------------------------------------------------

class AtomoVideoJoinSegments(io.ComfyNode):
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
        node, k = JOIN, int(context_frames)
        video, segment = check_image(video, node, "video"), check_image(segment, node, "segment")
        if k < 1:
            raise input_error(node, "context_frames", f"{k}: at least 1 frame overlaps")
        if video.shape[0] < k:
            raise input_error(node, "video", f"{video.shape[0]} frame(s), fewer than the {k} context frames the "
                              "segment continues from")
        if segment.shape[0] <= k:
            raise input_error(node, "segment", f"{segment.shape[0]} frame(s) add nothing after the {k} context "
                              "frames; connect the decoded continuation segment")
        if segment.shape[1:] != video.shape[1:]:
            raise input_error(node, "segment", f"frames of {segment.shape[2]}x{segment.shape[1]}, the video's are "
                              f"{video.shape[2]}x{video.shape[1]}; continue at the video's size")
        return io.NodeOutput(cont.join_segments([video, segment.to(video.dtype)], k))


# --- AtomoVideoLongVideo -----------------------------------------------------------------------------------

class AtomoVideoLongVideo(io.ComfyNode):
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
    def execute(cls, model, positive, negative, vae, width, height, total_frames, segment_frames, context_frames,
                seed, steps, cfg, cfg_rescale, sampler_name, scheduler, pin_context=True, drift_strength=1.0,
                drift_target=TARGET_BOTH, image=None, given_video=None, reference=None, resize_mode=prep.CROP,
                decode_batch=16) -> io.NodeOutput:
        return io.NodeOutput(run_long_video(
            model, positive, negative, vae, width, height, total_frames, segment_frames, context_frames, seed, steps,
            cfg, cfg_rescale, sampler_name, scheduler, pin_context, drift_strength, drift_target, image,
            given_video, reference, resize_mode, decode_batch))


def run_long_video(model, positive, negative, vae, width, height, total_frames, segment_frames, context_frames,
                   seed, steps, cfg, cfg_rescale, sampler_name, scheduler, pin_context=True, drift_strength=1.0,
                   drift_target=TARGET_BOTH, image=None, given_video=None, reference=None, resize_mode=prep.CROP,
                   decode_batch=16, on_segment=None) -> torch.Tensor:
    """The long-video loop. `on_segment(info)` (tests, benchmark) sees each run after sampling: a dict with the
    segment, its sampled latents, its image-condition latent and mask, and its decoded frames."""
    node = LONG
    max_frames = weights_max_frames(model, node)
    for name, value in (("width", width), ("height", height)):
        try:
            prep.check_size(int(value), name)
        except AtomoVideoError as e:
            raise input_error(node, name, str(e)) from None
        if value > MAX_SIZE:
            raise input_error(node, name, f"{name} {value} is larger than {MAX_SIZE}")
    if resize_mode not in prep.RESIZE_MODES:
        raise input_error(node, "resize_mode", f"unknown mode '{resize_mode}'; use one of {prep.RESIZE_MODES}")
    if not isinstance(decode_batch, int) or decode_batch < 1:
        raise input_error(node, "decode_batch", f"{decode_batch}; decode at least 1 frame at a time")
    if given_video is not None:
        given_video = check_image(given_video, node, "given_video")
        if tuple(given_video.shape[1:3]) != (height, width):
            raise input_error(node, "given_video", f"frames of {given_video.shape[2]}x{given_video.shape[1]}, but "
                              f"the video is {width}x{height}; set width/height to the given video's size or "
                              "resize it first")
        if image is not None:
            raise input_error(node, "image", "a given video is continued from its last frames; the start image "
                              "is not used then: disconnect one of them")
    if image is not None:
        image = check_image(image, node, "image")
        if image.shape[0] != 1:
            raise input_error(node, "image", f"{image.shape[0]} images; give one start image (use "
                              "'given_video' to continue several frames)")
    if reference is not None:
        reference = check_image(reference, node, "reference")
    try:
        plan = cont.plan_segments(total_frames, segment_frames, context_frames, max_frames,
                                  None if given_video is None else given_video.shape[0])
    except AtomoVideoError as e:
        raise _renamed(e, node) from None
    drift = drift_settings(drift_strength, drift_target, node)
    sigmas = sampling_sigmas(node, model, int(steps), sampler_name, scheduler)
    sampler = comfy.samplers.sampler_object(sampler_name)
    patched = glue.set_cfg_rescale(model, cfg_rescale)
    L, k = plan.segment_frames, plan.context_frames
    latent_mode = not drift.active  # without drift control, hand the context over as latents (no VAE trip)
    steps_per_run = sigmas.shape[-1] - 1
    pbar = comfy.utils.ProgressBar(steps_per_run * len(plan.segments))
    previewer = latent_preview.get_previewer(patched.load_device, patched.model.latent_format)
    device = comfy.model_management.intermediate_device()
    h, w = height // 8, width // 8

    def given_latents(seg, context):
        """(latents [n, 4, h, w], indices) of the given frames of this run."""
        if context is not None:
            frames = context.frames
            if not latent_mode:
                frames = encode_in_chunks(vae, frames, width, height, prep.CROP, decode_batch)
            return frames.to(device, torch.float32), context.indices
        if image is not None:
            return encode_in_chunks(vae, image, width, height, resize_mode, decode_batch), [0]
        return None, []

    def sample(seg: cont.Segment, context):
        comfy.model_management.throw_exception_if_processing_interrupted()
        latents, indices = given_latents(seg, context)
        if latents is not None:
            if tuple(latents.shape[1:]) != (4, h, w):
                raise input_error(node, "vae", f"this VAE gives latents of shape {list(latents.shape[1:])} for "
                                  f"{width}x{height}; AtomoVideo (SD1.5) needs [4, {h}, {w}]")
            cond_latent, mask = prep.frame_conditioning(latents, indices, L)
            values = {IMAGE_COND: comfy.conds.CONDRegular(cond_latent), MASK_COND: comfy.conds.CONDRegular(mask)}
            pos, neg = with_model_conds(positive, values), with_model_conds(negative, values)
            latent = pinned_latent(cond_latent, mask, bool(pin_context))
        else:  # text-to-video first run
            cond_latent = mask = None
            pos, neg = positive, negative
            latent = {"samples": torch.zeros(L, 4, h, w, device=device)}
        latent_image = comfy.sample.fix_empty_latent_channels(patched, latent["samples"])
        run_seed = (int(seed) + seg.index) % 2**64  # seeds are 64-bit in ComfyUI
        noise = comfy.sample.prepare_noise(latent_image, run_seed, None)
        offset = seg.index * steps_per_run

        def callback(step, x0, x, total_steps):
            preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer else None
            pbar.update_absolute(offset + step + 1, None, preview)
            comfy.model_management.throw_exception_if_processing_interrupted()

        samples = comfy.sample.sample_custom(
            patched, noise, cfg, sampler, sigmas, pos, neg, latent_image, noise_mask=latent.get("noise_mask"),
            callback=callback, disable_pbar=True, seed=run_seed)
        del noise, pos, neg, latent_image
        pin_error = None
        if "noise_mask" in latent:
            # KSamplerX0Inpaint holds the given frames at every step; only the latent scaling in and out of the
            # model (x 0.18215 and back) and the last step's arithmetic leave float round-off on them. Put the
            # given latents back exactly, so a seam frame is the given one bit for bit.
            keep = latent["noise_mask"][:, 0, 0, 0] == 0
            pin_error = (samples[keep] - cond_latent[keep].to(samples)).abs().max().item()
            samples[keep] = cond_latent[keep].to(samples)
        del latent
        if latent_mode:
            out = samples
            decoded = None
        else:
            out = decoded = decode_in_chunks(vae, samples, decode_batch)
        if on_segment is not None:
            on_segment({"segment": seg, "latents": samples, "cond_latent": cond_latent, "mask": mask,
                        "images": decoded, "pin_error": pin_error})
        comfy.model_management.throw_exception_if_processing_interrupted()
        return out

    try:
        with torch.no_grad():
            video = _loop(plan, sample, latent_mode, given_video, vae, width, height, k, decode_batch, drift,
                          reference, on_segment, device)
    except BaseException:
        release_patched(patched)
        raise
    comfy.model_management.soft_empty_cache()
    return video


def _loop(plan, sample, latent_mode, given_video, vae, width, height, k, decode_batch, drift, reference, on_segment,
          device) -> torch.Tensor:
    """run_continuation with pixel hand-over (drift control on) or latent hand-over (off: decode as we go)."""
    if not latent_mode:
        return cont.run_continuation(plan, sample, given_video=given_video, drift=drift, reference=reference)
    given = None
    if given_video is not None:
        # Only the last k given frames are handed over (as latents); the given video itself stays as it is.
        tail = encode_in_chunks(vae, given_video[-k:], width, height, prep.CROP, decode_batch)
        filler = tail.new_zeros(1, *tail.shape[1:]).expand(given_video.shape[0] - k, *tail.shape[1:])
        given = torch.cat([filler, tail])
    decoded_parts = [] if given_video is None else [given_video.to(device, torch.float32)]

    def keep_decoded(seg, out):
        # Decode each run's kept frames as soon as it is done; its latents are then dropped.
        decoded_parts.append(decode_in_chunks(vae, out[seg.keep_start:seg.keep_stop], decode_batch))
        if on_segment is not None:
            on_segment({"segment": seg, "decoded_kept": decoded_parts[-1]})

    cont.run_continuation(plan, sample, given_video=given, on_segment=keep_decoded)
    return torch.cat(decoded_parts, dim=0)[:plan.total_frames]
