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
            "settings", "files", "seeds", "seconds", "per_clip"}
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
    assert res["seeds"] == seeds and res["settings"]["split"] == "test"
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


def test_split_train_measures_the_training_clips(comfy, demo_files, capsys):
    """`--split train` scores the clips the model was trained on: their seeds, their copy-last baseline."""
    claims = module("atomo_demo.claims")
    res, _ = claims.measure(demo_files, claims.ClaimsSettings(clips=1, split="train", steps=1, given=(2,)),
                            log=lambda *a: None)
    seed = world.split_seeds("train", 1)[0]
    assert res["seeds"] == [seed] and res["settings"]["split"] == "train"
    assert seed not in world.split_seeds("test", 100)
    truth = _truth(seed)
    copy = np.mean([fidelity.psnr_from_mse(fidelity.mse(a, b))
                    for a, b in zip(pred.copy_last(truth[:2], 12), truth[2:14])])
    assert res["frame_prediction"]["k2"]["copy_last"]["psnr"]["mean"] == pytest.approx(copy, rel=1e-6)
    assert "1 clips of the world's train split" in claims.table(res)


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


def test_v_vs_eps_samples_each_arm_as_its_file_says_and_scores_its_brightness(comfy, demo_files, tmp_path):
    """Claim 5 on random models: the eps file samples as an eps model (no zero-SNR v-prediction), the v file as
    v-prediction, and each arm's frame-0 error is the L* difference of the sample the claims' own call makes."""
    claims = module("atomo_demo.claims")
    ve = module("atomo_demo.v_vs_eps")
    is_v = module("atomo_host.zero_snr", "is_v_prediction")
    load = core("weight_files", "load_temporal_weights")
    weights = load(demo_files.atomovideo)
    meta = dict(weights.metadata.__dict__, prediction="eps", zero_terminal_snr=False)
    eps_weights = core("weight_format", "AtomoVideoWeights")(type(weights.metadata)(**meta), weights.temporal,
                                                           weights.conv_in_extra)
    eps_file = tmp_path / "eps.safetensors"
    core("weight_format", "save_atomovideo")(eps_file, eps_weights)
    s = claims.ClaimsSettings(clips=2, steps=2)
    res = claims.measure_v_vs_eps(demo_files, claims.EpsComparison(demo_files.base, eps_file), s, log=lambda *a: None)
    assert res["measured"] and res["same_schedule"] is False  # random files carry no training record
    assert res["eps"]["frame0"]["n"] == res["v"]["frame0"]["n"] == 2

    seed = world.split_seeds("test", 1)[0]
    truth = _truth(seed)
    for arm, path, v_pred in (("v", demo_files.atomovideo, True), ("eps", eps_file, False)):
        demo = claims.load_demo(claims.DemoFiles(demo_files.base, demo_files.vae, path))
        assert is_v(demo.arms["model"]) is v_pred
        with torch.no_grad():
            video = claims.image_to_video(demo, "model", truth[0], s, s.seed)
            roundtrip = claims._decode(demo, demo.vae.encode(torch.from_numpy(truth)))
        expected = abs(ve.lightness(video[:1])[0] - ve.lightness(roundtrip[:1])[0])
        assert res[arm]["per_clip"][0]["frame0"] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert res["eps"]["per_clip"][0]["frame0"] != pytest.approx(res["v"]["per_clip"][0]["frame0"], rel=1e-3)
