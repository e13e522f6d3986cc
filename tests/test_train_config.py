"""The trainer's TOML sections, host-free: defaults, overrides and errors that name the key."""
from __future__ import annotations

from pack import module
import pytest

TrainConfig, apply_overrides, load_config = module("atomo_train.config", "TrainConfig", "apply_overrides", "load_config")
ConfigError = module("atomo_train.errors", "ConfigError")


def minimal(tmp_path, **sections):
    d = {"data": {"path": "videos"}, "model": {"checkpoint": "base.safetensors"}}
    for k, v in sections.items():
        d.setdefault(k, {}).update(v)
    return d


def test_defaults_and_paths_relative_to_the_toml(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[data]\npath = "videos"\n[model]\ncheckpoint = "base.safetensors"\n')
    cfg = load_config(toml)
    assert cfg.model.checkpoint == (tmp_path / "base.safetensors").resolve()
    assert cfg.data.path == (tmp_path / "videos").resolve()
    assert (cfg.optim.lr, cfg.optim.batch_size, cfg.optim.grad_accum, cfg.output.keep_states) == (1e-4, 1, 1, 3)
    assert cfg.conditioning.first_frame == 1.0 and cfg.validation.every == 0


def test_cli_overrides_are_toml_values(tmp_path):
    d = apply_overrides(minimal(tmp_path), ["optim.lr=3e-5", "optim.batch_size=8", 'output.name="x"',
                                            "validation.quantiles=[0.5]"])
    cfg = TrainConfig.from_dict(d, tmp_path)
    assert cfg.optim.lr == 3e-5 and cfg.optim.batch_size == 8 and cfg.output.name == "x"
    assert cfg.validation.quantiles == (0.5,)
    with pytest.raises(ConfigError, match="--set expects section.key=value"):
        apply_overrides({}, ["lr=1"])


@pytest.mark.parametrize("sections,key,text", [
    ({"model": {"checkpoint": None}}, "model.checkpoint", "is required"),
    ({"optim": {"lrr": 1}}, "optim.lrr", "did you mean 'lr'"),
    ({"bogus": {}}, "bogus", "unknown section"),
    ({"data": {"frames": 16}, "model": {"max_frames": 8}}, "model.max_frames", "at least 16"),
    ({"optim": {"betas": [0.9]}}, "optim.betas", "two numbers"),
    ({"optim": {"mixed_precision": "fp8"}}, "optim.mixed_precision", "must be one of"),
    ({"validation": {"quantiles": [1.5]}}, "validation.quantiles", "in \\[0, 1\\]"),
])
def test_bad_values_name_the_key(tmp_path, sections, key, text):
    d = minimal(tmp_path, **sections)
    if d["model"].get("checkpoint") is None:
        del d["model"]["checkpoint"]
    with pytest.raises(ConfigError, match=rf"config key '{key}'.*{text}"):
        TrainConfig.from_dict(d, tmp_path)


def test_a_global_batch_that_does_not_split_is_refused_with_the_fix(tmp_path):
    cfg = TrainConfig.from_dict(minimal(tmp_path, optim={"batch_size": 6, "grad_accum": 2}), tmp_path)
    assert cfg.optim.micro_batch(1) == 3 and cfg.optim.micro_batch(3) == 1
    with pytest.raises(ConfigError, match=r"config key 'optim.batch_size': 6 clips do not split over 2 .*"
                                          r"multiple of 4"):
        cfg.optim.micro_batch(2)


def test_missing_init_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"config key 'init.pia': file not found"):
        TrainConfig.from_dict(minimal(tmp_path, init={"pia": "pia.ckpt"}), tmp_path)


def test_the_config_hash_follows_settings_not_output_paths(tmp_path):
    a = TrainConfig.from_dict(minimal(tmp_path), tmp_path)
    b = TrainConfig.from_dict(minimal(tmp_path, output={"dir": "elsewhere"}), tmp_path)
    c = TrainConfig.from_dict(minimal(tmp_path, optim={"lr": 1e-5}), tmp_path)
    assert a.hash() == b.hash() != c.hash()


def test_model_vae_is_a_file_relative_to_the_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"config key 'model.vae': file not found"):
        TrainConfig.from_dict(minimal(tmp_path, model={"vae": "vae.safetensors"}), tmp_path)
    with pytest.raises(ConfigError, match=r"config key 'model.vae': must be a file path"):
        TrainConfig.from_dict(minimal(tmp_path, model={"vae": 3}), tmp_path)
    (tmp_path / "vae.safetensors").write_bytes(b"x")
    cfg = TrainConfig.from_dict(minimal(tmp_path, model={"vae": "vae.safetensors"}), tmp_path)
    assert cfg.model.vae == (tmp_path / "vae.safetensors").resolve()
    assert TrainConfig.from_dict(minimal(tmp_path), tmp_path).model.vae is None
