"""The demo's claims command on small random models (the numbers are meaningless; what is tested is that every
claim is measured, the baselines are those of the ground truth, and the zeroed-temporal arm is frame by frame)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixture_models import fill_random_, randomize_outputs_
from pack import REPO, core, module
from PIL import Image

world = module("atomo_demo.world")
pred, fidelity, motion = core("metrics.prediction"), core("metrics.fidelity"), core("metrics.motion")
DEMO_UNET = module("atomo_demo.train_base", "DEMO_UNET")

pytestmark = pytest.mark.host

TOP_KEYS = {"first_frame", "frame_prediction", "frame_prediction_vae_space", "motion", "long_video", "v_vs_eps",
            "settings", "files", "test_seeds", "seconds", "per_clip"}
CI_KEYS = {"mean", "ci_low", "ci_high", "n"}


@pytest.fixture(scope="module")
def demo_files(comfy, tmp_path_factory):
    """A random small base in the demo's UNet config, the committed demo VAE, and AtomoVideo weights whose
    temporal layers are non-zero (so zeroing them changes the model)."""
    small_base = module("atomo_host.small_base")
    claims = module("atomo_demo.claims")
    out = tmp_path_factory.mktemp("claims_models")
    unet = small_base.build_model(DEMO_UNET).diffusion_model
    unet.load_state_dict(fill_random_(unet.state_dict(), seed=11))
    base_path = small_base.save_small_base(out / "base.safetensors", unet, DEMO_UNET)
    layout = module("atomo_host.inflation").host_layout(unet)
    weights = core("weight_format", "fresh_weights")(core("unet_sites", "atomovideo_sites")(layout))
    randomize_outputs_(weights, seed=7, scale=0.2)
    core("weight_format", "save_atomovideo")(out / "atomo.safetensors", weights)
    return claims.DemoFiles(base_path, REPO / "atomo_demo" / "weights" / "atomo_demo_vae.safetensors",
                            out / "atomo.safetensors")


def _truth(seed: int) -> np.ndarray:
    return world.make_clip(seed, frames=32, size=64)[0][:16].astype(np.float32) / 255.0


def test_claims_command_writes_every_claim(comfy, demo_files, tmp_path, capsys):
    claims = module("atomo_demo.claims")
    threads = torch.get_num_threads()
    rc = claims.main(["--clips", "2", "--steps", "2", "--out", str(tmp_path), "--base", str(demo_files.base),
                      "--vae", str(demo_files.vae), "--atomovideo", str(demo_files.atomovideo)])
    assert rc == 0 and torch.get_num_threads() == threads
    printed = capsys.readouterr().out
    assert "2. frame prediction" in printed and "copy last" in printed and "wrote " in printed
    res = json.loads((tmp_path / "claims.json").read_text())
    assert set(res) == TOP_KEYS
    seeds = world.split_seeds("test", 2)
    assert res["test_seeds"] == seeds
    for m in ("psnr", "ssim"):
        assert set(res["first_frame"][m]) == CI_KEYS and res["first_frame"][m]["n"] == 2
    for key in ("k2", "k3", "k4"):
        e = res["frame_prediction"][key]
        assert set(e) >= {"model", "copy_last", "linear", "vae_roundtrip", "model_minus_copy_last",
                          "model_minus_linear", "per_frame", "frames"}
        assert e["frames"] == [int(key[1]), int(key[1]) + 11]
        ci = e["model_minus_copy_last"]["psnr"]
        assert ci["ci_low"] < ci["mean"] < ci["ci_high"]
        assert len(e["per_frame"]["model"]["psnr"]) == 12
        assert set(res["frame_prediction_vae_space"][key]) >= {"model", "copy_last", "linear"}
    # the baselines are those of the ground truth: recomputed here from the world's clips
    k = 3
    copy, lin, flow = [], [], []
    for seed in seeds:
        truth = _truth(seed)
        target = truth[k:k + 12]
        copy.append(np.mean([fidelity.psnr_from_mse(fidelity.mse(a, b))
                             for a, b in zip(pred.copy_last(truth[:k], 12), target)]))
        lin.append(np.mean([fidelity.ssim(a, b) for a, b in zip(pred.linear_extrapolation(truth[:k], 12), target)]))
        flow.append(np.mean(motion.motion_and_warp(truth)["flow_magnitude"]))
    assert [c["prediction"]["k3"]["copy_last"]["psnr"] for c in res["per_clip"]] == pytest.approx(copy, rel=1e-6)
    assert [c["seed"] for c in res["per_clip"]] == seeds
    assert res["frame_prediction"]["k3"]["copy_last"]["psnr"]["mean"] == pytest.approx(np.mean(copy), rel=1e-6)
    assert res["frame_prediction"]["k3"]["linear"]["ssim"]["mean"] == pytest.approx(np.mean(lin), rel=1e-6)
    assert res["motion"]["clips"]["mean"] == pytest.approx(np.mean(flow), rel=1e-6)
    mo = res["motion"]
    assert mo["generated_over_zeroed"] == pytest.approx(mo["generated"]["mean"] / mo["zeroed_temporal"]["mean"])
    lv = res["long_video"]
    for name in ("drift_off", "drift_on"):
        assert len(lv[name]["segment_drift"]) == 4 and len(lv[name]["per_frame_drift"]) == 16 + 3 * 12
        assert all(d["mean"] >= 0 for d in lv[name]["segment_drift"])
    assert res["v_vs_eps"]["measured"] is False
    assert Image.open(tmp_path / "claims.png").size == (512, 800)
    assert Image.open(tmp_path / "claims_videos.png").size == (16 * 64, 2 * 3 * 64)


def test_zeroed_temporal_arm_treats_every_frame_alone(comfy, demo_files):
    """With the temporal layers zeroed, frame 0's result does not depend on the other frames (it does with them
    on); the extra input channels are kept and the loaded weights are left as they were."""
    claims = module("atomo_demo.claims")
    conditioning = module("atomo_host.conditioning")
    sampling = module("atomo_host.sampling")
    demo = claims.load_demo(demo_files)
    zeroed = claims.zeroed_temporal(demo.weights)
    assert torch.equal(zeroed.conv_in_extra, demo.weights.conv_in_extra)
    out_keys = [(site, key) for site, sd in demo.weights.temporal.items() for key in sd
                if key.endswith(("to_out.0.weight", "conv.weight"))]
    assert out_keys and all(demo.weights.temporal[s][k].abs().max() > 0 for s, k in out_keys)
    assert all(zeroed.temporal[s][k].abs().max() == 0 for s, k in out_keys)

    truth = torch.from_numpy(_truth(world.split_seeds("test", 1)[0]))
    pos, neg, _ = conditioning.condition_video(demo.conditioning, demo.vae, truth[:1],
                                               conditioning.ImageConditioning(frames=16, width=64, height=64))
    start = demo.vae.encode(truth).float()
    other = start.clone()
    other[1:] = -torch.flip(start[1:], dims=[0])  # frames 1-15 changed, frame 0 the same
    settings = sampling.SamplingSettings(seed=0, steps=2, cfg=1.0, denoise=0.6)

    def frame0_change(arm):
        a = sampling.sample_run(demo.arms[arm], pos, neg, {"samples": start}, settings)[0]
        b = sampling.sample_run(demo.arms[arm], pos, neg, {"samples": other}, settings)[0]
        return (a - b).abs().max().item()

    assert frame0_change("zeroed") <= 1e-5
    assert frame0_change("model") > 1e-3
