"""Weight files (what AtomoVideoLoader reads) and training states (what --resume reads), kept apart.

- Weights: `<output.dir>/<name>-step<N>.safetensors` every `save_every` steps, and `<name>.safetensors` at the
  end; trainable keys only, AtomoVideo metadata plus an `atomovideo_training` entry (config hash, step).
- States: `<output.dir>/states/step-<N>/` from `accelerator.save_state` (trainable weights, optimizer, RNG,
  EMA, step). Written to a temporary folder and renamed, so an interrupted save never looks complete; only the
  last `keep_states` are kept.
Every file is written to a temporary name and renamed, so a full disk or a kill leaves the previous file intact.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..atomo_core.weight_format import save_atomovideo

STATES = "states"
TRAINING_METADATA = "atomovideo_training"


class WriteError(RuntimeError):
    pass


def write_weights(path: Path, weights, training: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_atomovideo(tmp, weights, extra_metadata={TRAINING_METADATA: json.dumps(training, sort_keys=True)})
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"could not write the weight file {path} ({e.strerror or e}); free disk space or change "
                         "output.dir, then resume with --resume") from None
    return path


def state_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / STATES / f"step-{step:08d}"


def save_state(accelerator, output_dir: Path, step: int, keep: int) -> Path:
    final = state_dir(output_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
    except OSError as e:
        raise WriteError(f"could not write the training state {final} ({e.strerror or e}); free disk space or "
                         "change output.dir; the previous state is intact") from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_states(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def list_states(output_dir: Path) -> list[Path]:
    root = Path(output_dir) / STATES
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")
                  and not p.name.endswith(".tmp"))


def resolve_resume(resume: str, output_dir: Path) -> Path | None:
    """`latest` (the newest complete state in output.dir, None if there is none) or a state folder."""
    if resume in ("latest", "auto"):
        states = list_states(output_dir)
        return states[-1] if states else None
    p = Path(resume)
    if not p.is_dir():
        raise WriteError(f"--resume {resume}: not a training state folder (expected {STATES}/step-N in "
                         "output.dir, or 'latest')")
    return p
