"""The training loop in the real ComfyUI on the tiny fixture: loss goes down, the base stays bit-identical, the
written file loads in AtomoVideoLoader and gives the trainer's output, resume and accumulation are exact."""
from __future__ import annotations

import pytest
import torch

from pack import module
from train_helpers import encode_world_clips, run_config


@pytest.fixture(scope="session")
def clips(comfy, tiny_models):
    return encode_world_clips(comfy, tiny_models["checkpoint"], count=4)


@pytest.fixture(scope="session")
def mods(comfy):
    return {name: module(f"atomo_train.{name}") for name in ("config", "model_setup", "loop")}


def make_run(comfy, tiny_models, mods, out_dir, **sections):
    cfg = mods["config"].TrainConfig.from_dict(run_config(comfy, tiny_models["checkpoint"], out_dir, **sections))
    setup = mods["model_setup"]
    base = setup.load_base(cfg.model.checkpoint)
    weights = setup.initial_weights(cfg.model, cfg.init, setup.unet_layout(base.patcher), cfg.optim.seed)
    return cfg, base, setup.TrainerModel(base, weights, cfg.data.frames)


def accelerator(mods, cfg):
    return mods["loop"].make_accelerator(cfg, log=False)


def test_short_run_leaves_the_base_bit_identical_and_writes_weights_and_states(comfy, tiny_models, clips, mods,
                                                                             tmp_path):
    dataset, null_text = clips
    cfg, base, tm = make_run(comfy, tiny_models, mods, tmp_path, optim={"max_steps": 4}, output={"save_every": 2})
    before = mods["model_setup"].base_state(base)
    result = mods["loop"].train(cfg, tm, dataset, null_text, accelerator=accelerator(mods, cfg),
                                progress_bar=False)
    tm.detach()
    assert len(result.losses) == 4
    after = mods["model_setup"].base_state(base)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert result.weights is not None and result.weights.is_file()
    names = sorted(p.name for p in cfg.output.dir.glob("*.safetensors"))
    assert names == ["atomovideo-step00000002.safetensors", "atomovideo-step00000004.safetensors",
                     "atomovideo.safetensors"]
    assert [p.name for p in mods["loop"].checkpoints.list_states(cfg.output.dir)] == ["step-00000004"]
    log = (cfg.output.dir / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 4


def params_of(result) -> dict:
    return {k: v.detach().clone() for k, v in result.module.state_dict().items()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def optimizer_tensors(result) -> dict:
    state = result.optimizer.state_dict()["state"]
    return {f"{i}.{name}": v for i, s in state.items() for name, v in s.items() if torch.is_tensor(v)}


SHORT = {"max_steps": 6, "batch_size": 2, "lr": 1e-3}


def test_gradient_accumulation_2_by_half_equals_one_full_batch(comfy, tiny_models, clips, mods, tmp_path):
    dataset, null_text = clips
    runs = {}
    for accum in (1, 2):
        cfg, _, tm = make_run(comfy, tiny_models, mods, tmp_path / f"a{accum}", optim={**SHORT, "grad_accum": accum})
        runs[accum] = mods["loop"].train(cfg, tm, dataset, null_text, accelerator=accelerator(mods, cfg),
                                         progress_bar=False)
        tm.detach()
    moved = max_diff(params_of(runs[1]), {k: torch.zeros_like(v) for k, v in params_of(runs[1]).items()})
    assert moved > 0
    assert max_diff(params_of(runs[1]), params_of(runs[2])) <= 1e-6
    assert max(abs(a - b) for a, b in zip(runs[1].losses, runs[2].losses)) <= 1e-5


def test_resume_n_then_2n_equals_2n_uninterrupted(comfy, tiny_models, clips, mods, tmp_path):
    dataset, null_text = clips
    opt = {**SHORT, "max_steps": 6}
    cfg, _, tm = make_run(comfy, tiny_models, mods, tmp_path / "full", optim=opt)
    full = mods["loop"].train(cfg, tm, dataset, null_text, accelerator=accelerator(mods, cfg), progress_bar=False)
    tm.detach()

    cfg, _, tm = make_run(comfy, tiny_models, mods, tmp_path / "split", optim=opt)
    first = mods["loop"].train(cfg, tm, dataset, null_text, accelerator=accelerator(mods, cfg), progress_bar=False,
                               stop_after=3)
    tm.detach()
    assert first.step == 3
    states = mods["loop"].checkpoints.list_states(cfg.output.dir)
    assert [p.name for p in states] == ["step-00000003"]
    cfg, _, tm = make_run(comfy, tiny_models, mods, tmp_path / "split", optim=opt)  # a new process, in effect
    second = mods["loop"].train(cfg, tm, dataset, null_text, accelerator=accelerator(mods, cfg), progress_bar=False,
                                resume="latest")
    tm.detach()
    assert second.step == 6 and len(second.losses) == 3
    assert max_diff(params_of(full), params_of(second)) <= 1e-6
    assert max_diff(optimizer_tensors(full), optimizer_tensors(second)) <= 1e-6
    assert first.losses + second.losses == pytest.approx(full.losses, abs=1e-6)


def test_eps_prediction_run_regresses_the_noise_on_sd15s_schedule_and_says_so_in_its_file(comfy, tiny_models, clips,
                                                                                         mods, tmp_path):
    """model.prediction = "eps" (the paper's comparison model): noise as the target, SD1.5's own schedule, and a
    file whose metadata makes the loader sample it as an eps model (no zero-SNR v-prediction)."""
    dataset, null_text = clips
    ns = module("atomo_core.noise_schedules")
    loop = mods["loop"]
    samples = {}
    for prediction in ("v", "eps"):
        cfg, base, tm = make_run(comfy, tiny_models, mods, tmp_path / prediction, model={"prediction": prediction},
                                 optim={"max_steps": 2})
        assert (tm.metadata.prediction, tm.metadata.zero_terminal_snr) == (prediction, prediction == "v")
        t = 999  # the last step: pure noise for v, sqrt(0.00466) of the image left for eps
        ab = ns.training_alphas_cumprod(prediction)[t].float()
        s = loop.make_sample(dataset[0], 0, frames=cfg.data.frames, seed=0, draws_cfg=cfg.conditioning,
                             metadata=tm.metadata, null_text=null_text, alphas_cumprod=ns.training_alphas_cumprod(
                                 prediction), timestep=t, first_frame_only=True)
        x0 = dataset[0]["latents"][:cfg.data.frames].float()
        noise = (s.x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        expected = noise if prediction == "eps" else ab.sqrt() * noise - (1 - ab).sqrt() * x0
        assert torch.allclose(s.target, expected, atol=1e-5)
        samples[prediction] = s
        if prediction == "eps":
            result = loop.train(cfg, tm, dataset, null_text, accelerator=accelerator(mods, cfg), progress_bar=False)
            tm.detach()
            read = module("atomo_core.weight_files", "load_temporal_weights")(result.weights)
            assert (read.metadata.prediction, read.metadata.zero_terminal_snr) == ("eps", False)
        else:
            tm.detach()
    # same draws (seed, clip, timestep), different schedules: the eps sample keeps some of the image at t=999
    assert not torch.allclose(samples["v"].x_t, samples["eps"].x_t)
