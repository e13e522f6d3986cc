"""The retrain recipe is consistent with what claim 5 compares: the eps arm repeats the v run's first EPS_STEPS
steps (constant learning rate, a weight file saved at that step), with eps prediction and its own eps base."""
from __future__ import annotations

import tomllib
from pathlib import Path

from pack import module

retrain = module("atomo_demo.retrain")


def _sets(cmd: list[str]) -> dict:
    return dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--set")


def test_eps_arm_repeats_the_v_runs_constant_learning_rate_part():
    optim = tomllib.loads(retrain.CONFIG.read_text())["optim"]
    output = tomllib.loads(retrain.CONFIG.read_text())["output"]
    # the v run's file at EPS_STEPS exists and was trained before its decay began
    assert retrain.EPS_STEPS % output["save_every"] == 0
    assert optim["max_steps"] - optim.get("decay_steps", 0) >= retrain.EPS_STEPS
    out = Path("/tmp/retrain-out")
    names = [name for name, _, _ in retrain.stages(out)]
    assert names == ["vae", "base", "world", "world-val", "video"]
    (base_name, base_cmd, _), (video_name, video_cmd, done) = retrain.eps_stages(out)
    v_base_cmd = dict((n, c) for n, c, _ in retrain.stages(out))["base"]
    assert base_cmd[base_cmd.index("--prediction") + 1] == "eps"
    # the same base recipe apart from the prediction type and the folder
    assert [a for a in base_cmd if a not in ("--prediction", "eps")][4:] == \
        [a for a in v_base_cmd][4:] and base_cmd[3] != v_base_cmd[3]
    sets, v_sets = _sets(video_cmd), _sets(dict((n, c) for n, c, _ in retrain.stages(out))["video"])
    assert sets["model.prediction"] == '"eps"' and int(sets["optim.max_steps"]) == retrain.EPS_STEPS
    assert sets["optim.decay_steps"] == "0" and "base-eps" in sets["model.checkpoint"]
    assert sets["data.cache_dir"] == f'"{out / "video-eps" / "cache"}"'  # a cache is tied to its base file
    assert {k: v for k, v in sets.items() if k not in ("model.prediction", "optim.max_steps", "optim.decay_steps",
                                                      "model.checkpoint", "output.dir", "data.cache_dir")} == \
        {k: v for k, v in v_sets.items() if k not in ("model.checkpoint", "output.dir")}
    assert done == out / "video-eps" / "demo_atomovideo.safetensors"
