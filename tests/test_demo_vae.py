"""Demo VAE trainer (host-free): learns, resumes exactly, refuses bad settings; TAESD layout holds real weights."""
from __future__ import annotations

import json

import pytest
import torch

from pack import module

train_vae, world = module("atomo_demo", "train_vae", "world")
TinyAutoencoder, load_taesd_files = module("atomo_demo.taesd_layout", "TinyAutoencoder", "load_taesd_files")


def _cfg(out, **kw):
    base = dict(out=str(out), steps=8, batch=4, crop=16, clips=4, eval_clips=1, eval_frames=2, save_every=4,
                log_every=4, lr=2e-3, warmup=2, threads=1, seed=3)
    base.update(kw)
    return train_vae.Config(**base)


def _frames(n_clips=1):
    return train_vae.to_tensor(train_vae.frame_pool("train", n_clips, 64, 8))


@torch.no_grad()
def _mse(model, x):
    return float(((model(x)[1] - x) ** 2).mean())


def test_few_steps_reduce_reconstruction_loss(tmp_path):
    # one clip's frames (the training pool of clips=1, stride 8), so a short run shows a clear effect
    cfg = _cfg(tmp_path / "run", steps=40, save_every=40, log_every=20, clips=1, frame_stride=8, lr=1e-3, warmup=4,
               crop=32)
    torch.manual_seed(cfg.seed)
    before = _mse(TinyAutoencoder().init_for_training(), _frames())
    result = train_vae.train(cfg)
    w = tmp_path / "run" / "weights"
    after = _mse(load_taesd_files(w / "taesd_encoder.safetensors", w / "taesd_decoder.safetensors"), _frames())
    assert after < 0.7 * before, (before, after)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["step"] == 40 and saved["finished"] and saved["psnr_mean"] == pytest.approx(result["psnr_mean"])
    assert set(saved["stage_seconds_this_run"]) == {"data", "train", "eval"}


def test_resume_gives_the_uninterrupted_weights(tmp_path, capsys):
    train_vae.train(_cfg(tmp_path / "straight"))
    first = train_vae.train(_cfg(tmp_path / "chunked", stop_after=4))
    assert first["step"] == 4 and not first["finished"]
    second = train_vae.train(_cfg(tmp_path / "chunked", resume=True))
    assert second["step"] == 8 and second["finished"]
    assert "resumed from" in capsys.readouterr().out
    a = torch.load(tmp_path / "straight" / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "chunked" / "checkpoints" / "latest.pt", weights_only=True)
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # A changed setting cannot silently continue an old run; an existing run is not overwritten.
    with pytest.raises(ValueError, match="differ from the checkpoint.*'lr'"):
        train_vae.train(_cfg(tmp_path / "chunked", resume=True, lr=1e-4))
    with pytest.raises(FileExistsError, match="pass --resume"):
        train_vae.train(_cfg(tmp_path / "straight"))


@pytest.mark.parametrize("key,value,match", [("crop", 20, "--crop must be a multiple of 8"),
                                             ("size", 60, "--size must be a multiple of 8"),
                                             ("steps", 0, "--steps must be >= 1")])
def test_bad_settings_are_named(tmp_path, key, value, match):
    with pytest.raises(ValueError, match=match):
        train_vae.train(_cfg(tmp_path, **{key: value}))


def test_cli_parses_every_setting(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(train_vae, "train", lambda cfg: seen.setdefault("cfg", cfg))
    train_vae.main([str(tmp_path), "--steps", "5", "--crop", "24", "--latent-noise", "0.1", "--resume"])
    cfg = seen["cfg"]
    assert (cfg.steps, cfg.crop, cfg.latent_noise, cfg.resume, cfg.batch) == (5, 24, 0.1, True, 8)


def test_layout_holds_real_taesd_weights(taesd_paths):
    """The real TAESD files load strictly into our module tree and round-trip a world frame well."""
    model = load_taesd_files(*taesd_paths)
    clip, _ = world.make_clip(world.split_seeds("test", 1)[0], frames=8, size=64)
    x = train_vae.to_tensor(clip)
    with torch.no_grad():
        z, rec = model(x)
    assert z.shape == (8, 4, 8, 8)
    p = train_vae.psnr(rec, x)
    assert p.mean() > 20.0, p
    # the same frames through an untrained model of the same layout are far worse
    torch.manual_seed(0)
    with torch.no_grad():
        assert train_vae.psnr(TinyAutoencoder()(x)[1], x).mean() < 12.0
