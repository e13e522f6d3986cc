"""Long videos by frame continuation (AtomoVideo's "video frame prediction"), without the host.

The model is unchanged: a segment is one sampling run of `segment_frames` (L) frames; its first
`context_frames` (k) frames are given (the last k frames of the previous output, mask 1 in the image
condition) and the model predicts the other L - k. Iterating extends the video; the joined video keeps the
previous segment's context frames and drops their reproduction in the next run.

Every run samples exactly L frames, also the last one: AtomoVideo-style weights only behave at the frame count
they were trained on (garbage outside it is a known failure of video packs), so the last run keeps only the
frames still needed and its tail is discarded, instead of sampling a shorter run or silently changing k.

A video can start fresh (the first run has no context: its given frames come from the input image node) or
continue a given video of G frames (every run has context; the given video stays untouched as the start of
the result). Bad settings are refused with the input named, never clamped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch

from .errors import AtomoVideoError
from .image_preparation import check_image


@dataclass(frozen=True)
class Segment:
    """One sampling run and its place in the final video.

    `context_from`: indices, into the previous output (the previous run's L frames, or the given video for the
    first run when continuing one), of the frames given to this run at its positions 0..k-1; empty for a fresh
    first run. `context_video`: where those frames sit in the final video. The run's frames
    `keep_start:keep_stop` become video frames `start + keep_start ...`."""
    index: int
    start: int
    frames: int
    context: int
    new_frames: int
    context_from: tuple[int, ...]
    context_video: tuple[int, ...]

    @property
    def keep_start(self) -> int:
        return self.context

    @property
    def keep_stop(self) -> int:
        return self.context + self.new_frames

    @property
    def new_video_frames(self) -> range:
        return range(self.start + self.context, self.start + self.context + self.new_frames)


@dataclass(frozen=True)
class SegmentPlan:
    total_frames: int
    segment_frames: int
    context_frames: int
    given_frames: int
    segments: tuple[Segment, ...]

    @property
    def sampled_frames(self) -> int:
        """Frames sampled over all runs (the cost), including reproduced context and the discarded tail."""
        return sum(s.frames for s in self.segments)


def check_settings(total_frames: int, segment_frames: int, context_frames: int, max_frames: int | None = None,
                   given_frames: int | None = None) -> None:
    """Refuse settings the plan cannot honour; each message says what to change."""
    k, L, N = int(context_frames), int(segment_frames), int(total_frames)
    if k < 1:
        raise AtomoVideoError("context_frames", f"{k} context frames: at least 1 frame of the previous output "
                          "must be given to continue it")
    if max_frames is not None and k > max_frames:
        raise AtomoVideoError("context_frames", f"{k} context frames, but the loaded weights handle at most "
                          f"{max_frames} frames per run; use fewer context frames")
    if max_frames is not None and L > max_frames:
        raise AtomoVideoError("segment_frames", f"{L} frames per segment, but the loaded weights handle at most "
                          f"{max_frames} frames per run; set segment_frames to {max_frames} or less")
    if k >= L:
        raise AtomoVideoError("context_frames", f"{k} context frames leave no new frame in a segment of {L} "
                          f"frames; context_frames must be below segment_frames (e.g. {max(1, L // 4)})")
    if given_frames is not None and given_frames < k:
        raise AtomoVideoError("context_frames", f"{k} context frames, but the given video has only "
                          f"{given_frames} frame(s); use at most {given_frames} context frames or give a longer "
                          "video")
    if N < L:
        raise AtomoVideoError("total_frames", f"{N} frames in total is shorter than one segment of {L} frames; "
                          f"raise total_frames to at least {L} (or lower segment_frames, below the weights' "
                          "trained frame count motion may degrade)")
    if given_frames is not None and N <= given_frames:
        raise AtomoVideoError("total_frames", f"{N} frames in total, but the given video already has "
                          f"{given_frames}; raise total_frames above {given_frames} to add frames")


def check_next_segment(context_frames: int, new_frames: int, max_frames: int) -> int:
    """The length of one segment made by hand (k context + new frames); refused when the weights cannot run it."""
    k, new = int(context_frames), int(new_frames)
    if k < 1:
        raise AtomoVideoError("context_frames", f"{k} context frames: at least 1 is needed")
    if new < 1:
        raise AtomoVideoError("new_frames", f"{new} new frames: the segment must add at least 1 frame")
    if k >= max_frames:
        raise AtomoVideoError("context_frames", f"{k} context frames, but the loaded weights handle at most "
                              f"{max_frames} frames per run, and a segment needs at least one new frame; use at "
                              f"most {max_frames - 1}")
    if k + new > max_frames:
        raise AtomoVideoError("new_frames", f"{k} context + {new} new = {k + new} frames per segment, but the "
                              f"loaded weights handle at most {max_frames}; use at most {max_frames - k} new "
                              "frames")
    return k + new


def plan_segments(total_frames: int, segment_frames: int, context_frames: int, max_frames: int | None = None,
                  given_frames: int | None = None) -> SegmentPlan:
    """The runs that make a video of exactly `total_frames` frames (including a given video's frames)."""
    check_settings(total_frames, segment_frames, context_frames, max_frames, given_frames)
    N, L, k = int(total_frames), int(segment_frames), int(context_frames)
    segments = []
    if given_frames is None:
        segments.append(Segment(0, 0, L, 0, L, (), ()))
        produced, previous_length = L, L
    else:
        produced, previous_length = int(given_frames), int(given_frames)
    while produced < N:
        start = produced - k
        new = min(L - k, N - produced)
        segments.append(Segment(len(segments), start, L, k, new,
                                tuple(range(previous_length - k, previous_length)), tuple(range(start, produced))))
        produced += new
        previous_length = L
    return SegmentPlan(N, L, k, 0 if given_frames is None else int(given_frames), tuple(segments))


class Context(NamedTuple):
    """The given frames of the next run: positions in that run and the frames (images or latents)."""
    indices: list[int]
    frames: torch.Tensor

    @property
    def frame_indices_text(self) -> str:
        """The positions as the conditioning node's `frame_indices` string, e.g. '0-3'."""
        return "0" if len(self.indices) == 1 else f"0-{len(self.indices) - 1}"


def context_for_next_segment(frames: torch.Tensor, k: int, segment_frames: int) -> Context:
    """Last k frames of `frames` (IMAGE [F,H,W,3] or latent [F,4,h,w]), given at positions 0..k-1."""
    k, L = int(k), int(segment_frames)
    if k < 1:
        raise AtomoVideoError("context_frames", f"{k} context frames: at least 1 is needed")
    if k >= L:
        raise AtomoVideoError("context_frames", f"{k} context frames leave no new frame in a segment of {L} "
                          "frames; context_frames must be below segment_frames")
    if frames.shape[0] < k:
        raise AtomoVideoError("context_frames", f"{k} context frames, but only {frames.shape[0]} frame(s) are "
                          f"given; use at most {frames.shape[0]} context frames or give a longer video")
    return Context(list(range(k)), frames[frames.shape[0] - k:].clone())


def join_segments(segments: Sequence[torch.Tensor], k: int, total_frames: int | None = None) -> torch.Tensor:
    """One video: segment 0 whole (a fresh run or a given video), then frames k.. of each later run.

    With `total_frames`, the tail beyond it (the unused end of the last run) is cut; a shorter join is refused."""
    if not segments:
        raise ValueError("no segment to join")
    parts = [segments[0]]
    for i, seg in enumerate(segments[1:], start=1):
        if seg.shape[0] <= k:
            raise ValueError(f"segment {i} has {seg.shape[0]} frames, not more than the {k} context frames it "
                             "starts with")
        if seg.shape[1:] != segments[0].shape[1:]:
            raise ValueError(f"segment {i} has frames of shape {tuple(seg.shape[1:])}, segment 0 "
                             f"{tuple(segments[0].shape[1:])}")
        parts.append(seg[k:])
    video = torch.cat(parts, dim=0)
    if total_frames is not None:
        if video.shape[0] < total_frames:
            raise ValueError(f"the segments join to {video.shape[0]} frames, fewer than the {total_frames} "
                             "requested")
        video = video[:total_frames]
    return video


def append_segment(video: torch.Tensor, segment: torch.Tensor, k: int) -> torch.Tensor:
    """`video` + `segment[k:]` (IMAGE batches): a continued segment joined by hand, its k overlap frames dropped."""
    video, segment, k = check_image(video, "video"), check_image(segment, "segment"), int(k)
    if k < 1:
        raise AtomoVideoError("context_frames", f"{k}: at least 1 frame overlaps")
    if video.shape[0] < k:
        raise AtomoVideoError("video", f"{video.shape[0]} frame(s), fewer than the {k} context frames the segment "
                              "continues from")
    if segment.shape[0] <= k:
        raise AtomoVideoError("segment", f"{segment.shape[0]} frame(s) add nothing after the {k} context frames; "
                              "connect the decoded continuation segment")
    if segment.shape[1:] != video.shape[1:]:
        raise AtomoVideoError("segment", f"frames of {segment.shape[2]}x{segment.shape[1]}, the video's are "
                              f"{video.shape[2]}x{video.shape[1]}; continue at the video's size")
    return join_segments([video, segment.to(video.dtype)], k)


SampleFn = Callable[[Segment, "Context | None"], torch.Tensor]


def run_continuation(plan: SegmentPlan, sample: SampleFn, given_video: torch.Tensor | None = None,
                     drift=None, reference: torch.Tensor | None = None,
                     on_segment: Callable[[Segment, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Sample every run of `plan` with `sample(segment, context)` and join them into the final IMAGE video.

    `sample` gets the Context (IMAGE frames) of runs that have one (None for a fresh first run) and returns the
    run's L decoded frames [L,H,W,3]; the node wraps VAE encode, conditioning, sampling and decode in it, so this
    loop (planning, context hand-over, drift control, join) is tested without the host. `drift` is a
    `drift_control.DriftControl` (None = off); `reference` its reference IMAGE (default: the first L frames
    of the given video, else the first run's frames). `on_segment` sees each run's (corrected) output, e.g. for
    progress and previews."""
    from . import drift_control as dc

    k = plan.context_frames
    if plan.given_frames and (given_video is None or given_video.shape[0] != plan.given_frames):
        raise ValueError(f"the plan continues a video of {plan.given_frames} frames; give exactly that video")
    if not plan.given_frames and given_video is not None:
        raise ValueError("the plan starts a fresh video; plan with given_frames to continue a given video")
    active = drift is not None and drift.active
    L = plan.segment_frames
    ref_stats = dc.lab_stats(reference) if active and reference is not None else None
    # The model is given the raw frames of the previous output, corrected only with apply_to_context: what the
    # model sees and what the video shows are independent choices (both on: the same frames, the same map).
    previous_raw, previous_map = given_video, None
    if active and given_video is not None:
        # A given video stays as it is; its first L frames are the default reference and its last L frames,
        # the segment its context comes from, set the map for that context.
        if ref_stats is None:
            ref_stats = dc.lab_stats(given_video[:L])
            if given_video.shape[0] > L:
                previous_map = dc.segment_map(given_video[-L:], ref_stats, drift)
        else:
            previous_map = dc.segment_map(given_video[-L:], ref_stats, drift)
    outputs = [] if given_video is None else [given_video]
    for seg in plan.segments:
        context = None
        if seg.context:
            context = context_for_next_segment(previous_raw, k, plan.segment_frames)
            if active and drift.apply_to_context:
                context = Context(context.indices, dc.apply_map(context.frames, previous_map))
        raw = sample(seg, context)
        if raw.shape[0] != seg.frames:
            raise ValueError(f"segment {seg.index} sampled {raw.shape[0]} frames, the plan has {seg.frames}")
        out = raw
        if active:
            kept = raw[seg.keep_start:seg.keep_stop]
            if ref_stats is None:  # the first run is the reference: its map is the identity
                ref_stats, previous_map = dc.lab_stats(kept), None
            else:
                previous_map = dc.segment_map(kept, ref_stats, drift)
            if drift.apply_to_output:
                out = dc.apply_map(raw, previous_map)
        if on_segment is not None:
            on_segment(seg, out)
        outputs.append(out)
        previous_raw = raw
    return join_segments(outputs, k, plan.total_frames)
