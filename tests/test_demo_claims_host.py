"""The paper's claims on the committed demo weights (issue 13), with the held-out world clips as ground truth.

A target the shipped model meets is asserted as such. A target it does not meet yet is a strict xfail: it fails the
suite the day a retrain meets it (so the xfail and README's table get updated), and it documents the gap until then.
Every claim also has a floor: the value measured on the committed weights minus a tolerance for platform round-off
and the interval over 4 clips, so a worse retrain installed over the shipped files fails here.
"""
from __future__ import annotations

import pytest
from pack import module

pytestmark = pytest.mark.host

CLIPS = 4  # the first 4 of the 8 test clips README's table is measured on; about 2 min on one core

# Measured on the committed weights with CLIPS clips, 10 steps, CFG 1 (`claims.measure`); see README's table.
# (6500-step weights; the 8-clip numbers are in README.)
FRAME0_SSIM, FRAME0_PSNR = 0.801, 20.27
PRED_K2_PSNR = 17.63                    # model, frames 2-13 from 2 given frames, vs round-tripped truth (copy-last 21.2)
FLICKER_OVER_ZEROED = 0.140             # generated mean flow / zeroed-temporal mean flow
DRIFT_ON_LAST_OVER_FIRST = 0.828        # drift control off: 1.78


@pytest.fixture(scope="module")
def measured(comfy):
    claims = module("atomo_demo.claims")
    res, _ = claims.measure(claims.DemoFiles(), claims.ClaimsSettings(clips=CLIPS), log=lambda *a: None)
    fp = res["frame_prediction_vae_space"]["k2"]
    mo, lv = res["motion"], res["long_video"]
    print(f"claims on the committed weights ({CLIPS} clips): frame 0 SSIM {res['first_frame']['ssim']['mean']:.3f} "
          f"PSNR {res['first_frame']['psnr']['mean']:.2f}; k=2 model {fp['model']['psnr']['mean']:.2f} dB vs copy-last "
          f"{fp['copy_last']['psnr']['mean']:.2f}; flow generated {mo['generated']['mean']:.3f} clips "
          f"{mo['clips']['mean']:.3f} zeroed {mo['zeroed_temporal']['mean']:.3f}; drift on last/first "
          f"{lv['drift_on']['last_over_first_drift']:.3f} off {lv['drift_off']['last_over_first_drift']:.3f}")
    return res


def test_first_frame_keeps_its_measured_fidelity(measured):
    ff = measured["first_frame"]
    assert ff["ssim"]["mean"] >= FRAME0_SSIM - 0.03 and ff["psnr"]["mean"] >= FRAME0_PSNR - 1.0, ff


@pytest.mark.xfail(strict=True, reason="not met by the shipped demo model yet (docs/claims.md)")
def test_first_frame_ssim_reaches_the_target(measured):
    assert measured["first_frame"]["ssim"]["mean"] >= 0.9


def test_frame_prediction_keeps_its_measured_quality(measured):
    fp = measured["frame_prediction_vae_space"]["k2"]
    assert fp["model"]["psnr"]["mean"] >= PRED_K2_PSNR - 1.0, fp["model"]


@pytest.mark.xfail(strict=True, reason="not met by the shipped demo model yet (docs/claims.md)")
def test_frame_prediction_beats_copy_last_frame(measured):
    for k in ("k2", "k3", "k4"):
        assert measured["frame_prediction_vae_space"][k]["model_minus_copy_last"]["psnr"]["ci_low"] > 0, k


def test_temporal_layers_keep_the_video_steadier_than_frame_by_frame(measured):
    # Zeroed temporal layers sample every frame alone: the flow between frames is then flicker. The trained layers
    # must keep removing most of it (measured ratio plus a tolerance; a ratio of 1 would be layers that do nothing).
    assert measured["motion"]["generated_over_zeroed"] <= FLICKER_OVER_ZEROED + 0.1, measured["motion"]


@pytest.mark.xfail(strict=True, reason="not met by the shipped demo model yet (docs/claims.md)")
def test_generated_motion_within_a_factor_2_of_the_clips(measured):
    assert 0.5 <= measured["motion"]["generated_over_clips"] <= 2.0


def test_four_segments_drift_less_than_twice_the_first_with_drift_control(measured):
    lv = measured["long_video"]
    assert lv["drift_on"]["last_over_first_drift"] < 2.0, lv["drift_on"]["segment_drift"]
    assert lv["drift_on"]["last_over_first_drift"] <= DRIFT_ON_LAST_OVER_FIRST + 0.15
