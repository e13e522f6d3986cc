"""Host-free: segment planning, context hand-over and join for frame continuation, and Lab drift control."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from skimage.color import lab2rgb, rgb2lab

from pack import core

cont = core("continuation")
dc = core("drift_control")
AtomoVideoError = core("errors", "AtomoVideoError")


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: on a shared 2-core machine, intra-op threads only wait for each other (100x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- planning and join ---------------------------------------------------------------------------------------

def _index_sampler(log):
    """A fake model whose frame values are their index in the final video; it checks the context it gets."""
    def sample(seg, context):
        frames = torch.empty(seg.frames, 2, 2, 3)
        for j in range(seg.frames):
            frames[j] = seg.start + j
        if seg.context:
            got = context.frames[:, 0, 0, 0].tolist()
            assert got == list(seg.context_video), (seg, got)
            assert context.indices == list(range(seg.context))
            frames[:seg.context] = context.frames  # the run reproduces its given frames
        log.append(seg)
        return frames
    return sample


@pytest.mark.parametrize("n,L,k,starts,new", [
    (16, 16, 4, [0], [16]),
    (28, 16, 4, [0, 12], [16, 12]),
    (30, 16, 4, [0, 12, 24], [16, 12, 2]),
    (20, 8, 1, [0, 7, 14], [8, 7, 5]),
    (17, 16, 15, [0, 1], [16, 1]),
    (64, 16, 8, [0, 8, 16, 24, 32, 40, 48], [16, 8, 8, 8, 8, 8, 8]),
])
def test_plan_fresh_exact_frames_and_seams(n, L, k, starts, new):
    plan = cont.plan_segments(n, L, k, max_frames=32)
    assert [s.start for s in plan.segments] == starts
    assert [s.new_frames for s in plan.segments] == new
    assert all(s.frames == L for s in plan.segments)  # every run at the trained frame count
    assert plan.segments[0].context == 0 and plan.segments[0].context_from == ()
    for prev, seg in zip(plan.segments, plan.segments[1:]):
        assert seg.context_from == tuple(range(L - k, L))  # the previous run's last k frames
        assert seg.context_video == tuple(range(prev.start + L - k, prev.start + L))
    covered = [i for s in plan.segments for i in s.new_video_frames]
    assert covered == list(range(n))
    log = []
    video = cont.run_continuation(plan, _index_sampler(log))
    assert video[:, 0, 0, 0].tolist() == list(range(n))  # no frame repeated or missing at the seams
    assert len(log) == len(starts) and plan.sampled_frames == L * len(starts)


def test_plan_continuing_a_given_video():
    plan = cont.plan_segments(40, 16, 4, given_frames=16)
    assert [(s.start, s.new_frames, s.context_from, s.context_video) for s in plan.segments] == [
        (12, 12, (12, 13, 14, 15), (12, 13, 14, 15)), (24, 12, (12, 13, 14, 15), (24, 25, 26, 27))]
    given = torch.arange(16.0).view(16, 1, 1, 1).expand(16, 2, 2, 3).clone()
    video = cont.run_continuation(plan, _index_sampler([]), given_video=given)
    assert video[:, 0, 0, 0].tolist() == list(range(40))
    assert torch.equal(video[:16], given)


def test_join_drops_overlap_and_trims_to_total():
    a = torch.arange(8.0)
    b = torch.tensor([6.0, 7.0, 8, 9, 10, 11, 12, 13])  # starts with a's last 2 frames
    assert cont.join_segments([a, b], 2).tolist() == list(range(14))
    assert cont.join_segments([a, b], 2, total_frames=11).tolist() == list(range(11))
    with pytest.raises(ValueError, match="fewer than the 15 requested"):
        cont.join_segments([a, b], 2, total_frames=15)


@pytest.mark.parametrize("shape", [(10, 8, 8, 3), (10, 4, 2, 2)])  # IMAGE and latent
def test_context_for_next_segment(shape):
    frames = torch.arange(10.0).view(10, 1, 1, 1).expand(shape).clone()
    ctx = cont.context_for_next_segment(frames, 3, 16)
    assert ctx.indices == [0, 1, 2] and ctx.frame_indices_text == "0-2"
    assert ctx.frames.shape == (3,) + shape[1:] and ctx.frames[:, 0, 0, 0].tolist() == [7.0, 8.0, 9.0]
    ctx.frames.zero_()
    assert frames[9, 0, 0, 0] == 9  # a copy: the caller's video is not changed through it
    assert cont.context_for_next_segment(frames, 1, 16).frame_indices_text == "0"


@pytest.mark.parametrize("kwargs,input_name,fragment", [
    (dict(total_frames=32, segment_frames=16, context_frames=0), "context_frames", "at least 1"),
    (dict(total_frames=32, segment_frames=16, context_frames=16), "context_frames", "below segment_frames"),
    (dict(total_frames=32, segment_frames=24, context_frames=4, max_frames=16), "segment_frames",
     "at most 16 frames"),
    (dict(total_frames=64, segment_frames=32, context_frames=20, max_frames=16), "context_frames",
     "at most 16 frames"),
    (dict(total_frames=32, segment_frames=16, context_frames=4, given_frames=3), "context_frames",
     "only 3 frame(s)"),
    (dict(total_frames=12, segment_frames=16, context_frames=4), "total_frames", "at least 16"),
    (dict(total_frames=16, segment_frames=16, context_frames=4, given_frames=16), "total_frames", "above 16"),
])
def test_refusals_name_the_input_only(kwargs, input_name, fragment):
    with pytest.raises(AtomoVideoError) as e:
        cont.plan_segments(**kwargs)
    assert e.value.field == input_name and e.value.node is None  # the node layer names the node
    assert str(e.value).startswith(f"input '{input_name}': ")
    assert fragment in str(e.value)
    assert str(e.value.at("SomeNode")).startswith(f"SomeNode, input '{input_name}': ")


def test_context_refusals():
    with pytest.raises(AtomoVideoError, match=r"^input 'context_frames': .*only 2 frame"):
        cont.context_for_next_segment(torch.zeros(2, 4, 4, 3), 3, 16)
    with pytest.raises(AtomoVideoError, match=r"^input 'context_frames': .*below"):
        cont.context_for_next_segment(torch.zeros(20, 4, 4, 3), 16, 16)
    with pytest.raises(AtomoVideoError, match=r"^input 'drift_strength': 1.5 is outside"):
        dc.DriftControl(strength=1.5)


# --- Lab conversion -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lab_conversion_matches_skimage(dtype):
    g = torch.Generator().manual_seed(0)
    corners = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=torch.float64)
    rgb = torch.cat([corners, torch.rand(2000, 3, generator=g, dtype=torch.float64),
                     torch.rand(200, 3, generator=g, dtype=torch.float64) * 0.04])  # the linear toe
    lab = dc.srgb_to_lab(rgb.to(dtype))
    assert lab.dtype == dtype
    np.testing.assert_allclose(lab.double().numpy(), rgb2lab(rgb.numpy()), atol=1e-3, rtol=0)
    # Any Lab value, in or out of gamut: same clamping and negative-Z clipping as skimage.
    any_lab = torch.rand(2000, 3, generator=g, dtype=torch.float64) * torch.tensor([100.0, 250, 250]) \
        - torch.tensor([0.0, 125, 125])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = lab2rgb(any_lab.numpy())
    np.testing.assert_allclose(dc.lab_to_srgb(any_lab.to(dtype)).double().numpy(), expected, atol=1e-3, rtol=0)
    np.testing.assert_allclose(dc.lab_to_srgb(lab).double().numpy(), rgb.numpy(), atol=1e-3, rtol=0)


# --- drift control --------------------------------------------------------------------------------------------

SIZE, L_SEG, K_CTX, N_SEGMENTS = 24, 8, 2, 4
N_TOTAL = L_SEG + (N_SEGMENTS - 1) * (L_SEG - K_CTX)  # 26 frames


def _texture_lab():
    y, x = torch.meshgrid(torch.arange(SIZE, dtype=torch.float64), torch.arange(SIZE, dtype=torch.float64),
                          indexing="ij")
    w = 2 * math.pi / SIZE
    return torch.stack((45 + 8 * torch.sin(w * x) * torch.cos(w * y), 6 * torch.sin(w * y),
                        5 * torch.cos(w * x)), dim=-1)


def _drifting_sampler(dL=6.0, db=3.0, contrast=1.0, gradual=False, record=None):
    """A fake model that continues its last context frame moving right by a pixel a frame, with every run
    shifted by (dL, 0, db) in Lab and its L* contrast scaled by `contrast` relative to the frames it is given;
    `gradual`: the shift grows linearly over the run's new frames instead of appearing at its first one."""
    base = _texture_lab()

    def shifted(last, j, seg):
        t = (j - seg.context + 1) / (seg.frames - seg.context) if gradual else 1.0
        mean_L = last[..., 0].mean()
        moved = last.clone()
        moved[..., 0] = mean_L + (last[..., 0] - mean_L) * contrast + dL * t
        moved[..., 2] += db * t
        return dc.lab_to_srgb(torch.roll(moved, j - seg.context + 1, dims=1))

    def sample(seg, context):
        if context is None:
            frames = [dc.lab_to_srgb(torch.roll(base, j, dims=1)) for j in range(seg.frames)]
        else:
            last = dc.srgb_to_lab(context.frames[-1].double())
            frames = list(context.frames.double()) + [shifted(last, j, seg) for j in range(seg.context, seg.frames)]
        out = torch.stack(frames).float()
        if record is not None:
            record.append((seg, context, out))
        return out
    return sample


def _last_segment_drift(video, plan):
    """Mean Lab of the last segment's new frames minus that of the first segment, and its L* contrast ratio."""
    first = dc.lab_stats(video[:L_SEG])
    last = dc.lab_stats(video[list(plan.segments[-1].new_video_frames)])
    return (last.mean - first.mean).double(), float(last.std[0] / first.std[0])


def _frame_mean_L(video):
    return dc.srgb_to_lab(video).mean((1, 2))[:, 0]


def test_drift_control_stops_compounding_drift():
    plan = cont.plan_segments(N_TOTAL, L_SEG, K_CTX)
    assert len(plan.segments) == N_SEGMENTS
    raw = cont.run_continuation(plan, _drifting_sampler())
    fixed = cont.run_continuation(plan, _drifting_sampler(), drift=dc.DriftControl())
    d_raw, _ = _last_segment_drift(raw, plan)
    d_fix, _ = _last_segment_drift(fixed, plan)
    # The simulation drifts as designed: 3 runs after the first, +6 L* and +3 b* each.
    assert d_raw[0] == pytest.approx(18.0, abs=0.3) and d_raw[2] == pytest.approx(9.0, abs=0.3)
    assert abs(d_fix[0]) < abs(d_raw[0]) / 5 and abs(d_fix[2]) < abs(d_raw[2]) / 5
    assert abs(d_fix[0]) < 0.3 and abs(d_fix[2]) < 0.3 and abs(d_fix[1]) < 0.3
    # No brightness step at the seams: frame-to-frame change of mean L* stays small (raw: 6 at each seam).
    assert _frame_mean_L(raw).diff().abs().max() > 5.5
    assert _frame_mean_L(fixed).diff().abs().max() < 0.3
    assert torch.equal(fixed[:L_SEG], raw[:L_SEG])  # the reference segment itself is not touched


def test_gradual_drift_mean_is_corrected_but_seams_step():
    """Known limitation of one map per segment: drift that grows within a run is removed on average, but each
    seam then steps back by about the run's drift (5 of 6 L* here); the raw video has no step, only the trend."""
    plan = cont.plan_segments(N_TOTAL, L_SEG, K_CTX)
    raw = cont.run_continuation(plan, _drifting_sampler(gradual=True))
    fixed = cont.run_continuation(plan, _drifting_sampler(gradual=True), drift=dc.DriftControl())
    d_raw, _ = _last_segment_drift(raw, plan)
    d_fix, _ = _last_segment_drift(fixed, plan)
    assert d_raw[0] == pytest.approx(15.5, abs=0.3) and d_raw[2] == pytest.approx(7.75, abs=0.3)
    assert abs(d_fix[0]) < 0.3 and abs(d_fix[2]) < 0.3
    assert float(_frame_mean_L(raw).diff().abs().max()) == pytest.approx(1.0, abs=0.1)
    assert float(_frame_mean_L(fixed).diff().abs().max()) == pytest.approx(5.0, abs=0.2)


def test_drift_control_corrects_contrast_drift():
    plan = cont.plan_segments(N_TOTAL, L_SEG, K_CTX)
    raw = cont.run_continuation(plan, _drifting_sampler(dL=0.0, db=0.0, contrast=1.15))
    fixed = cont.run_continuation(plan, _drifting_sampler(dL=0.0, db=0.0, contrast=1.15), drift=dc.DriftControl())
    assert _last_segment_drift(raw, plan)[1] == pytest.approx(1.15 ** 3, rel=0.02)
    assert _last_segment_drift(fixed, plan)[1] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("drift", [None, dc.DriftControl(enabled=False), dc.DriftControl(strength=0.0),
                                   dc.DriftControl(apply_to_context=False, apply_to_output=False)])
def test_drift_control_off_is_bit_identical(drift):
    plan = cont.plan_segments(N_TOTAL, L_SEG, K_CTX)
    raw = cont.run_continuation(plan, _drifting_sampler())
    assert torch.equal(cont.run_continuation(plan, _drifting_sampler(), drift=drift), raw)
    seg = raw[-L_SEG:]
    assert dc.match_color(seg, raw[:L_SEG], strength=0.0) is seg
    assert dc.match_color(seg, raw[:L_SEG], enabled=False) is seg


def test_given_video_context_is_corrected_but_the_video_kept():
    """Continuing a video whose second half drifted +6 L*: the model is given reference-coloured frames."""
    plan = cont.plan_segments(24, L_SEG, K_CTX, given_frames=16)
    frames = _drifting_sampler(gradual=False)(cont.plan_segments(16, L_SEG, K_CTX).segments[0], None)
    lab = dc.srgb_to_lab(frames.double())
    given = torch.cat([frames, dc.lab_to_srgb(lab + torch.tensor([6.0, 0, 0])).float()])
    record = []
    video = cont.run_continuation(plan, _drifting_sampler(dL=0.0, db=0.0, record=record), given_video=given,
                                  drift=dc.DriftControl())
    assert torch.equal(video[:16], given)
    context_L = dc.lab_stats(record[0][1].frames).mean[0]
    assert float(context_L - dc.lab_stats(given[:8]).mean[0]) == pytest.approx(0.0, abs=0.2)
    raw_record = []
    cont.run_continuation(plan, _drifting_sampler(dL=0.0, db=0.0, record=raw_record), given_video=given)
    assert float(dc.lab_stats(raw_record[0][1].frames).mean[0] - context_L) == pytest.approx(6.0, abs=0.2)


def test_context_only_keeps_sampled_frames_and_bounds_drift():
    plan = cont.plan_segments(N_TOTAL, L_SEG, K_CTX)
    record = []
    video = cont.run_continuation(plan, _drifting_sampler(record=record),
                                  drift=dc.DriftControl(apply_to_output=False))
    for seg, _, out in record:  # the video holds the sampled frames untouched
        assert torch.equal(video[list(seg.new_video_frames)], out[seg.keep_start:seg.keep_stop])
    d, _ = _last_segment_drift(video, plan)
    assert d[0] == pytest.approx(6.0, abs=0.3) and d[2] == pytest.approx(3.0, abs=0.3)  # one run's, not 18


def test_output_only_gives_the_model_raw_context():
    plan = cont.plan_segments(N_TOTAL, L_SEG, K_CTX)
    record = []
    video = cont.run_continuation(plan, _drifting_sampler(record=record),
                                  drift=dc.DriftControl(apply_to_context=False))
    last_context = dc.lab_stats(record[-1][1].frames).mean - dc.lab_stats(video[:L_SEG]).mean
    assert last_context[0] == pytest.approx(12.0, abs=0.3)  # the raw chain still compounds
    d, _ = _last_segment_drift(video, plan)
    assert abs(d[0]) < 0.3 and abs(d[2]) < 0.3


def test_both_on_context_is_the_corrected_video():
    plan = cont.plan_segments(N_TOTAL, L_SEG, K_CTX)
    record = []
    video = cont.run_continuation(plan, _drifting_sampler(record=record), drift=dc.DriftControl())
    for seg, context, _ in record[1:]:
        assert torch.equal(context.frames, video[list(seg.context_video)])


def test_joint_statistics_keep_motion_within_a_segment():
    base = _texture_lab()
    ref = dc.lab_to_srgb(base)[None].float()
    ramp = torch.linspace(0, 10, 9, dtype=torch.float64)  # a light coming up by 10 L* over the segment
    seg = torch.stack([dc.lab_to_srgb(torch.roll(base, j, 1) + torch.tensor([8.0 + float(r), 0, 0]))
                       for j, r in enumerate(ramp)]).float()
    out = _frame_mean_L(dc.match_color(seg, ref))
    ref_L = float(dc.lab_stats(ref).mean[0])
    assert float(out.mean()) == pytest.approx(ref_L, abs=0.1)  # the +13 offset (8 + mean ramp 5) is gone
    assert float(out[-1] - out[0]) == pytest.approx(10.0, abs=0.1)  # per-frame matching would give 0
    half = _frame_mean_L(dc.match_color(seg, ref, strength=0.5))
    assert float(half.mean()) - ref_L == pytest.approx(6.5, abs=0.1)


def test_gain_is_bounded_for_flat_segments():
    base = _texture_lab()
    ref = dc.lab_to_srgb(base)[None].float()
    flat = base.clone()
    flat[..., 0] = 45 + (base[..., 0] - 45) / 4  # a quarter of the reference's L* contrast
    seg = dc.lab_to_srgb(flat)[None].float()
    ratio = dc.lab_stats(dc.match_color(seg, ref)).std[0] / dc.lab_stats(seg).std[0]
    assert float(ratio) == pytest.approx(2.0, abs=0.02)  # max_gain 2, not the 4 a full match would need
    ratio4 = dc.lab_stats(dc.match_color(seg, ref, max_gain=8.0)).std[0] / dc.lab_stats(seg).std[0]
    assert float(ratio4) == pytest.approx(4.0, abs=0.05)
