"""One trainer process for the distributed tests: `python train_dist_worker.py RUN.toml DATA.pt OUT.pt` or the
same under `accelerate launch`. Boots ComfyUI as the trainer's `__main__` does, trains on the encoded clips in
DATA.pt and (main process) saves the trainable parameters and optimizer state to OUT.pt."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(config_path: str, data_path: str, out_path: str, stop_after: str = "0", resume: str = "") -> int:
    sys.path.append(str(REPO))
    from atomo_train.host_boot import boot

    pack = boot(force_cpu=True)
    import torch

    from train_helpers import EncodedClips

    config = importlib.import_module(f"{pack.__name__}.atomo_train.config")
    setup = importlib.import_module(f"{pack.__name__}.atomo_train.model_setup")
    loop = importlib.import_module(f"{pack.__name__}.atomo_train.loop")
    cfg = config.load_config(config_path)
    acc = loop.make_accelerator(cfg, log=False)  # first: it refuses launches Accelerate cannot honour
    data = torch.load(data_path)
    dataset = EncodedClips(data["latents"], data["texts"])
    base = setup.load_base(cfg.model.checkpoint)
    weights = setup.initial_weights(cfg.model, cfg.init, setup.unet_layout(base.patcher), cfg.optim.seed)
    tm = setup.TrainerModel(base, weights,
                            cfg.data.frames)
    result = loop.train(cfg, tm, dataset, data["null_text"], accelerator=acc, progress_bar=False,
                        stop_after=int(stop_after) or None, resume=resume or None)
    if acc.is_main_process:
        module = acc.unwrap_model(tm.module)
        torch.save({"params": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                    "losses": result.losses, "world": acc.num_processes, "step": result.step,
                    }, out_path)
    acc.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(*sys.argv[1:]))
