"""FSDP on a CPU: what can be shown here and what Accelerate refuses.

Accelerate 1.16 never selects FSDP (or DeepSpeed) for CPU processes: `ACCELERATE_USE_CPU=1` makes the launch
MULTI_CPU (accelerate/state.py, `_prepare_backend`) and only GPU-type launches are switched to FSDP (state.py,
`elif self.distributed_type in [DistributedType.MULTI_GPU, ...]`), so a 2-process FSDP run cannot be compared with
one process on this machine. Shown instead:
- the trainer refuses such a launch with a clear error instead of silently running it as DDP (a real
  `accelerate launch` here), and refuses processes Accelerate did not join into one group (what it makes of a
  multi-process launch without a GPU and without ACCELERATE_USE_CPU: each would train alone and overwrite the
  others' files);
- the trainable module under torch's FSDP2 (`fully_shard`, what Accelerate applies for `fsdp_version: 2`), on one
  gloo process, gets the same gradients as the plain module for every parameter (conv_in's extra channels
  included) and the EMA reads its sharded parameters;
- validation, which would stall under FSDP, is refused before training.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pack import module
from train_helpers import FRAMES, run_config, toml_text

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "train_dist_worker.py"

FSDP2_CPU = """compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: NO_WRAP
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_reshard_after_forward: true
  fsdp_offload_params: false
  fsdp_cpu_ram_efficient_loading: false
num_machines: 1
num_processes: 2
main_process_port: 29641
mixed_precision: "no"
dynamo_backend: "NO"
"""


@pytest.fixture(scope="module")
def mods(comfy):
    return {name: module(f"atomo_train.{name}") for name in ("config", "model_setup", "loop", "ema", "errors")}


@pytest.fixture(scope="module")
def launch_files(comfy, tiny_models, tmp_path_factory):
    """A run config; the data file is never read (the worker makes its Accelerator first)."""
    root = tmp_path_factory.mktemp("fsdp")
    cfg = run_config(comfy, tiny_models["checkpoint"], root / "run", optim={"max_steps": 1, "batch_size": 2})
    (root / "run").mkdir()
    toml = root / "run" / "run.toml"
    toml.write_text(toml_text(cfg))
    return root, toml, root / "clips.pt"


def _launch(config_text: str, root: Path, toml: Path, data: Path, use_cpu: bool):
    config = root / "accelerate.yaml"
    config.write_text(config_text)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("ACCELERATE_USE_CPU", None)
    if use_cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), str(WORKER),
           str(toml), str(data), str(root / "out.pt")]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_an_fsdp_launch_on_cpu_is_refused_not_run_as_ddp(launch_files):
    root, toml, data = launch_files
    proc = _launch(FSDP2_CPU, root, toml, data, use_cpu=True)
    assert proc.returncode != 0
    assert "config key 'distributed_type': the Accelerate config asks for FSDP" in proc.stderr
    assert "silently run this launch as MULTI_CPU" in proc.stderr
    assert "cpu_2proc.yaml" in proc.stderr
    assert not (root / "out.pt").exists()


def test_check_launch_accepts_what_accelerate_honoured_and_nothing_else(mods):
    check, error = mods["loop"].check_launch, mods["errors"].ConfigError
    check("NO", 1, env={})
    check("MULTI_CPU", 2, env={"WORLD_SIZE": "2"})
    check("FSDP", 2, env={"WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "true"})
    check("DEEPSPEED", 8, env={"WORLD_SIZE": "8", "ACCELERATE_USE_DEEPSPEED": "true"})
    with pytest.raises(error, match="asks for DEEPSPEED"):
        check("MULTI_CPU", 2, env={"WORLD_SIZE": "2", "ACCELERATE_USE_DEEPSPEED": "true"})
    # What Accelerate 1.16 makes of `accelerate launch --num_processes 2` on a machine without GPU when
    # ACCELERATE_USE_CPU is not set: every process is its own one-process run (DistributedType.NO).
    with pytest.raises(error, match="started 2 processes but Accelerate joined them into a group of 1"):
        check("NO", 1, env={"WORLD_SIZE": "2"})


def _inputs(seed=0, clips=2, frames=FRAMES, size=8, extra=5):
    g = torch.Generator().manual_seed(seed)
    n = clips * frames
    return (torch.randn(n, 4, size, size, generator=g), torch.full((n,), 601.0),
            torch.randn(n, 77, 768, generator=g) * 0.5, torch.randn(n, extra, size, size, generator=g))


def _randomize_(module_, seed=7):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module_.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.05 if p.ndim < 2 else 1.0 / p[0].numel() ** 0.5))


def _grads(tm, x) -> dict:
    tm.module.zero_grad(set_to_none=True)
    tm.module(*x).pow(2).mean().backward()
    out = {}
    for name, p in tm.module.named_parameters():
        g = p.grad
        out[name] = None if g is None else (g.full_tensor() if hasattr(g, "full_tensor") else g).detach().clone()
    return out


def test_fully_sharded_module_trains_every_parameter_and_feeds_the_ema(comfy, tiny_models, mods, tmp_path):
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    setup = mods["model_setup"]
    cfg = mods["config"].TrainConfig.from_dict(run_config(comfy, tiny_models["checkpoint"], tmp_path))
    base = setup.load_base(cfg.model.checkpoint)
    weights = setup.initial_weights(cfg.model, cfg.init, setup.unet_layout(base.patcher), cfg.optim.seed)
    tm = setup.TrainerModel(base, weights, cfg.data.frames)
    tm.attach(torch.device("cpu"))
    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        _randomize_(tm.module)
        x = _inputs()
        plain = _grads(tm, x)
        ema = mods["ema"].EMA(tm.module, 0.5)
        before = {k: v.detach().clone() for k, v in tm.module.state_dict().items()}
        fully_shard(tm.module)
        assert type(tm.module.conv_in_extra).__name__ == "DTensor"  # FSDP2 replaced the Parameter
        sharded = _grads(tm, x)
        assert plain.keys() == sharded.keys() and "conv_in_extra" in plain
        assert all(sharded[k] is not None for k in sharded), [k for k in sharded if sharded[k] is None]
        assert plain["conv_in_extra"].abs().max() > 0
        assert max((plain[k] - sharded[k]).abs().max().item() for k in plain) <= 1e-6
        with torch.no_grad():
            for p in tm.module.parameters():
                p.sub_(p.grad)
        state = tm.module.state_dict()  # parameters are sharded DTensors, buffers plain tensors
        assert any(hasattr(v, "full_tensor") for v in state.values())
        ema.update(tm.module)
        after = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in state.items()}
        assert max((ema.shadow[k] - 0.5 * (before[k] + after[k])).abs().max().item() for k in before) <= 1e-6
        assert max((after[k] - before[k]).abs().max().item() for k in before) > 0
    finally:
        tm.detach()
        dist.destroy_process_group()


def test_validation_under_fsdp_is_refused_before_training(mods, comfy, tiny_models, tmp_path):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    cfg = mods["config"].TrainConfig.from_dict(run_config(comfy, tiny_models["checkpoint"], tmp_path,
                                                          validation={"every": 2}))
    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP)  # what a GPU FSDP launch's Accelerator reports
    with pytest.raises(mods["errors"].ConfigError, match="'validation.every': validation is not supported under"):
        mods["loop"].train(cfg, None, [], torch.zeros(1), accelerator=fsdp, validator=object())
