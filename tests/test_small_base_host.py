"""The demo's small SD1.5-family base in the real ComfyUI: built by the host's SD15 class from the UNet config in
its file, accepted as SD1.5, loaded by the trainer with a separate VAE; and its trainer resumes exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pack import module

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def small_base(comfy):
    return module("atomo_host.small_base")


@pytest.fixture(scope="module")
def train_base(comfy):
    return module("atomo_demo.train_base")


@pytest.fixture(scope="module")
def small_file(comfy, small_base, train_base, tmp_path_factory):
    """A demo-config UNet with random values, written as float32 (exact round trip)."""
    torch.manual_seed(0)
    unet = small_base.build_model(train_base.DEMO_UNET).diffusion_model
    train_base.init_weights(unet)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = small_base.save_small_base(tmp_path_factory.mktemp("small") / "demo_unet.safetensors", unet,
                                      train_base.DEMO_UNET, dtype=torch.float32)
    return path, unet


def test_loads_as_sd15_and_computes_what_was_saved(comfy, small_base, train_base, small_file):
    path, unet = small_file
    patcher = small_base.load_small_base(path)
    module("atomo_host.model_family", "check_sd15_base")(patcher)
    assert type(patcher.model.model_config).__name__ == "SD15"
    assert patcher.model.model_config.unet_config["model_channels"] == 64
    loaded = patcher.model.diffusion_model
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([10.0, 500.0, 990.0])
    with torch.no_grad():
        ref = unet(x, t, context=train_base.zero_context(3))
        out = loaded(x, t, context=train_base.zero_context(3))
    assert ref.abs().max() > 1e-2
    assert torch.equal(out, ref)
    assert patcher.get_model_object("latent_format").scale_factor == pytest.approx(0.18215)


def test_other_files_are_not_small_bases_and_bad_configs_are_refused(comfy, tiny_models, small_base, small_file,
                                                                    tmp_path):
    assert small_base.file_config(comfy.models_dir / "checkpoints" / tiny_models["checkpoint"]) is None
    path, _ = small_file
    sd = load_file(str(path))
    config = small_base.file_config(path)
    config["operations"] = "os.system"
    bad = tmp_path / "bad.safetensors"
    save_file(sd, str(bad), metadata={small_base.CONFIG_KEY: json.dumps(config)})
    with pytest.raises(module("atomo_core.errors", "AtomoVideoError"), match="unsupported UNet config"):
        small_base.file_config(bad)
    narrow = tmp_path / "narrow.safetensors"
    config = small_base.file_config(path)
    config["model_channels"] = 32
    save_file(sd, str(narrow), metadata={small_base.CONFIG_KEY: json.dumps(config)})
    with pytest.raises(module("atomo_core.errors", "AtomoVideoError"), match="does not match"):
        small_base.load_small_base(narrow)


def test_trainer_loads_the_small_base_with_a_separate_vae(comfy, small_file, tmp_path):
    setup = module("atomo_train.model_setup")
    ConfigError = module("atomo_train.errors", "ConfigError")
    enc = module("atomo_train.encoders")
    path, _ = small_file
    vae = Path(module("atomo_demo").__file__).parent / "weights" / "atomo_demo_vae.safetensors"
    base = setup.load_base(path, clip=True, vae=True, vae_path=vae)
    assert base.clip is None and base.vae is not None
    encoders = enc.build_encoders(base)
    text = encoders.text_encode(["a red circle moves left", ""])
    assert text.shape == (2, 1, 64) and not text.any()
    pixels = torch.rand(2, 3, 64, 64)
    assert encoders.vae_encode(pixels).shape == (2, 4, 8, 8)
    with pytest.raises(ConfigError, match="model.vae"):
        setup.load_base(path, clip=True, vae=True)


def test_base_trainer_resumes_to_the_same_weights(comfy, small_base, train_base, tmp_path):
    def run(out, **kw):
        cfg = train_base.Config(out=str(out), steps=4, batch=4, clips=1, eval_clips=1, frame_stride=16, warmup=2, save_every=2,
                                log_every=2, lr=1e-3, threads=1, **kw)
        return train_base.train(cfg, small_base.build_model, small_base.save_small_base)

    whole = run(tmp_path / "whole")
    run(tmp_path / "split", stop_after=2)
    resumed = run(tmp_path / "split", resume=True)
    assert whole["step"] == resumed["step"] == 4 and whole["finished"]
    a = load_file(str(tmp_path / "whole" / "weights" / "demo_unet.safetensors"))
    b = load_file(str(tmp_path / "split" / "weights" / "demo_unet.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    first = load_file(str(tmp_path / "whole" / "weights" / "demo_unet.safetensors"))
    assert any(v.float().abs().max() > 0 for k, v in first.items() if k.endswith("out.2.weight"))
