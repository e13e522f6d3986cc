"""The trainer's TOML sections, host-free: defaults, overrides and errors that name the key."""
from __future__ import annotations

from pathlib import Path

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
    m = cfg.model
    assert (m.clip_vision, m.image_projection, m.train_image_projection, m.gradient_checkpointing) == (
        None, "none", True, False)
    assert cfg.init.ip_adapter is None


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
    ({"model": {"image_projection": "full"}}, "model.image_projection", "must be one of 'none', 'base', 'plus'"),
    ({"model": {"image_projection": "base"}}, "model.clip_vision", "is required with model.image_projection"),
    ({"model": {"train_image_projection": "yes"}}, "model.train_image_projection", "true or false"),
    ({"model": {"clip_vision": "clip.safetensors"}}, "model.clip_vision", "file not found"),
    ({"init": {"ip_adapter": "ip.bin"}}, "init.ip_adapter", "file not found"),
    # issue 15: non-finite numbers, wrong types and folders where files belong
    ({"optim": {"lr": float("nan")}}, "optim.lr", "must be a finite number, got nan"),
    ({"optim": {"eps": float("inf")}}, "optim.eps", "must be a finite number, got inf"),
    ({"optim": {"betas": [0.9, float("nan")]}}, "optim.betas", "two numbers in \\[0, 1\\)"),
    ({"validation": {"cfg": float("-inf")}}, "validation.cfg", "must be a finite number, got -inf"),
    ({"validation": {"quantiles": [0.5, float("nan")]}}, "validation.quantiles", "numbers in \\[0, 1\\]"),
    ({"data": {"fps": float("inf")}}, "data.fps", "must be a finite number"),
    ({"data": {"val_fraction": float("nan")}}, "data.val_fraction", "must be a finite number"),
    ({"init": {"pia": 3}}, "init.pia", "must be a non-empty string, got 3"),
    ({"init": {"motion_module": "."}}, "init.motion_module", "is a folder, not a file\\. Give the path"),
    ({"model": {"vae": "."}}, "model.vae", "is a folder, not a file\\. Give the path"),
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
    with pytest.raises(ConfigError, match=r"config key 'model.vae': must be a non-empty string"):
        TrainConfig.from_dict(minimal(tmp_path, model={"vae": 3}), tmp_path)
    (tmp_path / "vae.safetensors").write_bytes(b"x")
    cfg = TrainConfig.from_dict(minimal(tmp_path, model={"vae": "vae.safetensors"}), tmp_path)
    assert cfg.model.vae == (tmp_path / "vae.safetensors").resolve()
    assert TrainConfig.from_dict(minimal(tmp_path), tmp_path).model.vae is None


def test_ip_adapter_needs_a_clip_vision_file(tmp_path):
    (tmp_path / "ip.bin").write_bytes(b"x")
    (tmp_path / "clip.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"config key 'model.clip_vision': is required with init.ip_adapter"):
        TrainConfig.from_dict(minimal(tmp_path, init={"ip_adapter": "ip.bin"}), tmp_path)
    cfg = TrainConfig.from_dict(minimal(tmp_path, init={"ip_adapter": "ip.bin"},
                                        model={"clip_vision": "clip.safetensors", "train_image_projection": False}),
                                tmp_path)
    assert cfg.init.ip_adapter == (tmp_path / "ip.bin").resolve() and not cfg.model.train_image_projection
    assert cfg.hash() != TrainConfig.from_dict(minimal(tmp_path, model={"clip_vision": "clip.safetensors"}),
                                               tmp_path).hash()


def test_every_trainer_key_is_in_the_readme_table():
    from dataclasses import fields
    from pathlib import Path

    config = module("atomo_train.config")
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    sections = {"model": config.ModelConfig, "init": config.InitConfig, "optim": config.OptimConfig,
                "output": config.OutputConfig, "validation": config.ValidationConfig}
    missing = [f"{s}.{f.name}" for s, cls in sections.items() for f in fields(cls)
               if f"| `{s}.{f.name}` |" not in readme]
    assert not missing, f"README lacks rows for {missing}"


def test_learning_rate_warms_up_holds_then_decays_to_zero_over_decay_steps(tmp_path):
    learning_rate = module("atomo_train.loop", "learning_rate")
    cfg = TrainConfig.from_dict(minimal(tmp_path, optim={"lr": 1.0, "warmup_steps": 2, "max_steps": 10,
                                                          "decay_steps": 4}), tmp_path)
    lrs = [learning_rate(cfg.optim, step) for step in range(10)]
    # warm-up (steps 0-1), constant (2-5), then the last 4 steps 4/5 .. 1/5 of lr: never 0, so no step is wasted
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2])
    plain = TrainConfig.from_dict(minimal(tmp_path, optim={"lr": 1.0, "warmup_steps": 2, "max_steps": 10}), tmp_path)
    assert [learning_rate(plain.optim, step) for step in range(10)] == pytest.approx([0.5] + [1.0] * 9)


def test_decay_longer_than_the_run_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.decay_steps.*at most max_steps"):
        TrainConfig.from_dict(minimal(tmp_path, optim={"max_steps": 10, "decay_steps": 11}), tmp_path)


def test_bad_toml_and_unreadable_config_say_what_to_do(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[optim]\nlr = \n')
    with pytest.raises(ConfigError, match=r"config key '--config': .*is not valid TOML \(.*line 2.*\); fix that line "
                                          r"\(see atomo_train/configs/example_run.toml"):
        load_config(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"cannot read .*binary\.toml \(UnicodeDecodeError\); check its permissions "
                                          r"and that it is a UTF-8 text file"):
        load_config(binary)
    toml = tmp_path / "nan.toml"  # TOML itself allows nan and inf: the key check refuses them
    toml.write_text('[data]\npath = "v"\n[model]\ncheckpoint = "b.safetensors"\n[optim]\nweight_decay = nan\n')
    with pytest.raises(ConfigError, match=r"config key 'optim.weight_decay': must be a finite number, got nan"):
        load_config(toml)
    with pytest.raises(ConfigError, match=r"config key 'optim.lr': must be a finite number, got inf"):
        load_config(None, ['data.path="v"', 'model.checkpoint="b.safetensors"', "optim.lr=inf"])


def test_missing_trainer_packages_are_named_with_the_install_line():
    main = module("atomo_train.__main__")
    present = {"tensorboard"}
    message = main.missing_packages(lambda name: object() if name in present else None)
    assert message.startswith("the trainer needs accelerate, which ComfyUI does not install")
    assert "python -m pip install -r requirements-train.txt" in message
    assert "accelerate and tensorboard" in main.missing_packages(lambda name: None)
    assert main.missing_packages(lambda name: object()) is None
    requirements = (Path(__file__).resolve().parents[1] / "requirements-train.txt").read_text()
    assert all(f"\n{name}>=" in requirements for name in main.TRAINING_PACKAGES)
