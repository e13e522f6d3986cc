"""Frame-prediction baselines and intervals of the demo's claims (host-free): exact values on synthetic frames."""
from __future__ import annotations

import math

import numpy as np
import pytest
from pack import core, module

pred = core("metrics.prediction")
fidelity = core("metrics.fidelity")
AtomoVideoError = core("errors", "AtomoVideoError")


def ramp(frames: int, start: float = 0.1, step: float = 0.05) -> np.ndarray:
    """Frame t is a flat grey of value start + step * t (every pixel changes by `step` a frame)."""
    values = start + step * np.arange(frames, dtype=np.float64)
    return np.broadcast_to(values[:, None, None, None], (frames, 8, 8, 3)).copy()


def test_copy_last_repeats_the_last_given_frame():
    given = np.random.default_rng(0).random((3, 8, 8, 3))
    out = pred.copy_last(given, 5)
    assert out.shape == (5, 8, 8, 3)
    for f in out:
        np.testing.assert_array_equal(f, given[-1])


def test_linear_extrapolation_is_exact_on_a_linear_ramp_and_copy_last_lags_by_the_step():
    truth = ramp(16)
    k = 4
    lin = pred.linear_extrapolation(truth[:k], 12)
    np.testing.assert_allclose(lin, truth[k:], atol=1e-12)
    copy = pred.copy_last(truth[:k], 12)
    # frame k-1+i is off by i steps: MSE (0.05 i)^2, PSNR -20 log10(0.05 i)
    for i, (a, b) in enumerate(zip(copy, truth[k:]), start=1):
        assert fidelity.mse(a, b) == pytest.approx((0.05 * i) ** 2, rel=1e-9)
        assert fidelity.psnr_from_mse(fidelity.mse(a, b)) == pytest.approx(-20 * math.log10(0.05 * i), rel=1e-9)


def test_linear_extrapolation_uses_only_the_last_two_frames_and_clips_to_the_image_range():
    given = np.stack([np.full((4, 4, 3), v) for v in (0.9, 0.2, 0.5, 0.8)])  # last step +0.3
    out = pred.linear_extrapolation(given, 3)
    np.testing.assert_allclose(out[:, 0, 0, 0], [1.0, 1.0, 1.0])   # 1.1, 1.4, 1.7 clipped
    falling = pred.linear_extrapolation(given[:2], 4)               # 0.9 -> 0.2: step -0.7
    np.testing.assert_allclose(falling[:, 0, 0, 0], [0.0, 0.0, 0.0, 0.0])
    with pytest.raises(AtomoVideoError, match="at least 2 given frames"):
        pred.linear_extrapolation(given[:1], 3)


def test_mean_ci_is_the_student_t_interval():
    ci = pred.mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert ci["mean"] == pytest.approx(2.0)
    assert ci["ci_low"] == pytest.approx(2.0 - half, rel=1e-9)
    assert ci["ci_high"] == pytest.approx(2.0 + half, rel=1e-9)
    assert ci["n"] == 3
    one = pred.mean_ci([5.0])
    assert one["mean"] == 5.0 and one["ci_low"] is None and one["n"] == 1


def test_sharpness_and_colour_drift():
    flat = np.full((1, 16, 16, 3), 0.5)
    checker = np.indices((16, 16)).sum(axis=0) % 2
    sharp = np.repeat(checker[None, :, :, None], 3, axis=-1).astype(np.float64)
    assert pred.laplacian_variance(flat) == [0.0]
    # the 4-neighbour Laplacian of a 0/1 checkerboard is +-4 * 255 on every pixel: variance (4 * 255)^2
    assert pred.laplacian_variance(sharp)[0] == pytest.approx((4 * 255) ** 2, rel=1e-5)
    assert pred.lab_mean_distance(flat, flat[0]) == [pytest.approx(0.0, abs=1e-6)]
    darker = np.full((1, 16, 16, 3), 0.25)
    d = pred.lab_mean_distance(darker, flat[0])[0]
    assert 15 < d < 30  # grey only: the distance is the L* difference (53.4 - 29.7 = 23.7)


def test_the_demo_command_lists_claims():
    import subprocess
    import sys

    from pack import REPO

    out = subprocess.run([sys.executable, "-m", "atomo_demo", "--help"], cwd=REPO, capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "claims" in out.stdout and "measure the AtomoVideo claims" in out.stdout


def test_brightness_errors_are_cielab_lightness_differences():
    ve = module("atomo_demo.v_vs_eps")
    black, white = np.zeros((1, 4, 4, 3), np.float32), np.ones((1, 4, 4, 3), np.float32)
    assert ve.lightness(np.concatenate([black, white])) == pytest.approx([0.0, 100.0], abs=1e-3)
    ref = np.concatenate([white, white, black])
    video = np.concatenate([black, white, white])  # frame 0 100 darker, frame 1 right, frame 2 100 lighter
    e = ve.brightness_errors(video, ref)
    assert e["frame0"] == pytest.approx(100.0, abs=1e-3) and e["clip"] == pytest.approx(200 / 3, abs=1e-3)
    assert e["clip_signed"] == pytest.approx(0.0, abs=1e-3)
    s = ve.summarise({"v": [{"frame0": 1.0, "clip": 2.0, "clip_signed": 0.0}] * 2,
                      "eps": [{"frame0": 4.0, "clip": 3.0, "clip_signed": -3.0}, {"frame0": 6.0, "clip": 5.0,
                                                                               "clip_signed": -5.0}]})
    assert s["eps_minus_v"]["frame0"]["mean"] == pytest.approx(4.0) and s["eps"]["clip"]["mean"] == pytest.approx(4.0)
    rec = {"step": 2000, "lr": 5e-4, "batch_size": 4, "frames": 16, "ema": True}
    assert ve.same_schedule(rec, dict(rec)) and not ve.same_schedule(rec, {**rec, "step": 6500})
    assert not ve.same_schedule({}, {})  # files without a training record cannot be called the same schedule
