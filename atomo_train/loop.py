"""The training loop on HuggingFace Accelerate: one step function for CPU, one GPU, DDP, multi-node, DeepSpeed
and FSDP (whatever `accelerate launch` was configured with).

Determinism: the clip, timestep, noise, mask and dropout of a sample depend only on the seed and the sample's
global position `n = step * batch_size + j` (j in 0..batch_size-1). How the global batch is split over processes
and accumulation steps therefore does not change what is computed, and resuming at step N continues exactly
where an uninterrupted run would be (the data position is the step count).
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomo_core import noise_schedules as ns
from ..atomo_core.conditioning_layout import build_concat, parse_layout
from . import checkpoints
from .draws import condition_inputs, draw, loss_frames
from .ema import EMA
from .errors import ConfigError

_MIX = 0x9E3779B97F4A7C15


def sample_seed(seed: int, n: int) -> int:
    return (seed * _MIX + n * 0xBF58476D1CE4E5B9 + 1) % (2 ** 63)


@functools.lru_cache(maxsize=4)
def _epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(size, generator=torch.Generator().manual_seed(sample_seed(seed, -1 - epoch)))


def dataset_index(n: int, size: int, seed: int) -> int:
    """Epoch-wise shuffled order: position n of the endless stream of clips."""
    epoch, pos = divmod(n, size)
    return int(_epoch_order(size, seed, epoch)[pos])


@dataclass
class Sample:
    x_t: torch.Tensor        # [F,4,h,w]
    t: torch.Tensor          # [F] (one timestep per clip, repeated)
    context: torch.Tensor    # [F,L,D]
    concat: torch.Tensor     # [F,C-4,h,w]
    target: torch.Tensor     # [F,4,h,w] v
    weight: torch.Tensor     # [F] 1 on frames the loss counts
    image: torch.Tensor | None = None  # [1,T,D] CLIP features of the conditioning frame (zero when dropped)


def make_sample(item: dict, n: int, *, frames: int, seed: int, draws_cfg, metadata, null_text: torch.Tensor,
                alphas_cumprod: torch.Tensor, timestep: int | None = None, first_frame_only: bool = False,
                image_features: bool = False) -> Sample:
    """One clip's training inputs. `timestep`/`first_frame_only` fix the draws for the eval loss;
    `image_features`: also the cached CLIP features of the conditioning frame (models with an image projection)."""
    g = torch.Generator().manual_seed(sample_seed(seed, n))
    x0 = item["latents"][:frames].detach().float()
    if x0.shape[0] < frames:
        raise ConfigError("data.frames", f"clip '{item.get('clip_id')}' has {x0.shape[0]} cached frames, the run "
                          f"wants {frames}; rebuild the cache (cache --rebuild) for these settings")
    d = draw(g, frames, draws_cfg)
    if first_frame_only:
        given = torch.zeros(frames, dtype=torch.bool)
        given[0] = True
        d = type(d)(given=given, drop_text=False, drop_image_tokens=False, drop_concat=False, kind="first_frame")
    image, mask = condition_inputs(x0, d, draws_cfg, g)
    t = int(torch.randint(0, len(alphas_cumprod), (), generator=g)) if timestep is None else int(timestep)
    noise = torch.randn(x0.shape, generator=g)
    ab = alphas_cumprod[t].float()
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    target = ns.training_target(metadata.prediction, x0, noise, ab)
    text = (null_text if d.drop_text else item["text"]).detach()
    concat = build_concat(parse_layout(metadata.channel_layout), x0, image, mask, metadata.mask_polarity)
    image = None
    if image_features and "image_tokens" in item:
        image = item["image_tokens"][d.image_frame].detach().float().unsqueeze(0)
        if d.drop_image_tokens:  # the projection of a zero feature: inference's unconditional image tokens
            image = torch.zeros_like(image)
    return Sample(x_t, torch.full((frames,), float(t)), text.float().unsqueeze(0).expand(frames, *text.shape),
                  concat, target, loss_frames(d, draws_cfg).float(), image)


def collate(samples: list[Sample], device) -> Sample:
    def cat(f):
        parts = [getattr(s, f) for s in samples]
        return None if parts[0] is None else torch.cat(parts).to(device)
    return Sample(*(cat(f) for f in Sample.__dataclass_fields__))


def sample_loss(pred: torch.Tensor, s: Sample, frames: int) -> torch.Tensor:
    """Per-clip mean squared v error over the frames the loss counts, then the mean over clips."""
    err = (pred.float() - s.target.float()).pow(2).flatten(1).mean(1) * s.weight      # [B*F]
    per_clip = err.view(-1, frames).sum(1) / s.weight.view(-1, frames).sum(1).clamp_min(1.0)
    return per_clip.mean()


def learning_rate(cfg, step: int) -> float:
    """Linear warm-up to optim.lr, constant, then (optim.decay_steps > 0) a linear decay to zero over the last
    decay_steps steps; a function of the step, so resuming restores it exactly and a longer run can add a decay."""
    lr = cfg.lr if cfg.warmup_steps <= 0 else cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
    left = cfg.max_steps - step            # steps still to take, this one included
    if cfg.decay_steps > 0 and left <= cfg.decay_steps:
        lr *= left / (cfg.decay_steps + 1)
    return lr


class Progress:
    """The run's position, saved with the Accelerate state (data position = step)."""

    def __init__(self):
        self.step = 0
        self.samples = 0

    def state_dict(self):
        return {"step": self.step, "samples": self.samples}

    def load_state_dict(self, d):
        self.step, self.samples = int(d["step"]), int(d["samples"])


def make_accelerator(cfg, log: bool = True):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    mp = cfg.optim.mixed_precision
    if mp == "auto":
        mp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if torch.cuda.is_available() else "no"
    project = ProjectConfiguration(project_dir=str(cfg.output.dir), logging_dir=str(cfg.output.dir / "logs"))
    accelerator = Accelerator(mixed_precision=mp, log_with="tensorboard" if log else None, project_config=project)
    check_launch(str(accelerator.distributed_type).split(".")[-1], accelerator.num_processes)
    return accelerator


_ENGINES = (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DEEPSPEED"))


def check_launch(distributed_type: str, num_processes: int, env=None) -> None:
    """Refuse what Accelerate (1.16) does silently with a config it cannot honour: without a GPU it runs an FSDP
    or DeepSpeed config as plain DDP (`ACCELERATE_USE_CPU=1`), or, without that flag, as N unconnected
    one-process runs that each train alone and overwrite each other's files."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE") or 1)
    if world > 1 and num_processes != world:
        raise ConfigError("distributed_type", f"accelerate launch started {world} processes but Accelerate joined "
                          f"them into a group of {num_processes} (no GPU found and ACCELERATE_USE_CPU not set): "
                          "each would train alone and overwrite the same files. On CPU set use_cpu: true in the "
                          "Accelerate config or ACCELERATE_USE_CPU=1 (see atomo_train/configs/cpu_2proc.yaml)")
    for flag, engine in _ENGINES:
        if (env.get(flag) or "false").lower() == "true" and distributed_type != engine:
            raise ConfigError("distributed_type", f"the Accelerate config asks for {engine}, but Accelerate runs "
                              f"{engine} only on GPUs and would silently run this launch as {distributed_type}; "
                              "on CPU use atomo_train/configs/cpu_2proc.yaml (DDP with gloo)")


@dataclass
class RunResult:
    losses: list             # mean training loss of every step (all processes)
    weights: Path | None     # the last weight file written
    step: int
    module: object = None    # the (prepared) trainable module and optimizer, for inspection
    optimizer: object = None


def train(cfg, tm, dataset, null_text: torch.Tensor, *, accelerator=None, resume: str | None = None,
          validator=None, stop_after: int | None = None, progress_bar: bool = True) -> RunResult:
    """Train `tm` (a model_setup.TrainerModel) on `dataset` (items as `data.dataset.CachedClips`).

    `stop_after` ends the run after that many steps in this call (tests of resume); states and weights are then
    written as at the end of a run.
    """
    accelerator = accelerator or make_accelerator(cfg)
    if validator is not None and cfg.validation.every and str(accelerator.distributed_type).endswith("FSDP"):
        # validation runs the module on the main process only and exports its state_dict: under FSDP the
        # forward would wait forever for the other processes' all-gather, and the state holds shards
        raise ConfigError("validation.every", "validation is not supported under FSDP yet; set it to 0 (or "
                          "train with DDP: multi_gpu.yaml) and validate a written weight file in ComfyUI")
    o, out = cfg.optim, cfg.output
    frames = cfg.data.frames
    world, rank = accelerator.num_processes, accelerator.process_index
    micro = o.micro_batch(world)
    if len(dataset) == 0:
        raise ConfigError("data.path", "no usable clips in the cache; check the cache step's report")
    tm.attach(accelerator.device)
    module = tm.module
    optimizer = torch.optim.AdamW(module.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay,
                                  eps=o.eps)
    progress = Progress()
    ema = EMA(module, o.ema_decay) if o.ema_decay > 0 else None
    module, optimizer = accelerator.prepare(module, optimizer)
    accelerator.register_for_checkpointing(progress)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    if resume:
        path = checkpoints.resolve_resume(resume, out.dir)
        if path is not None:
            accelerator.load_state(str(path))
            accelerator.print(f"atomo_train: resumed from {path} at step {progress.step}")
    if accelerator.is_main_process and accelerator.log_with:
        accelerator.init_trackers("atomovideo", config={"config_hash": cfg.hash()})
    alphas_cumprod = ns.training_alphas_cumprod(tm.metadata.prediction)
    null_text = null_text.float().cpu()
    losses: list[float] = []
    weights_path = None
    end = o.max_steps if stop_after is None else min(o.max_steps, progress.step + stop_after)
    bar = None
    if progress_bar and accelerator.is_main_process:
        from tqdm import tqdm

        bar = tqdm(total=o.max_steps, initial=progress.step, desc="atomo_train", unit="step", dynamic_ncols=True)
    t_last, samples_last = time.perf_counter(), progress.samples

    def local_batch(step: int, a: int) -> Sample:
        base_n = step * o.batch_size + a * world * micro + rank * micro
        items = []
        for i in range(micro):
            n = base_n + i
            item = dataset[dataset_index(n, len(dataset), o.seed)]
            items.append(make_sample(item, n, frames=frames, seed=o.seed, draws_cfg=cfg.conditioning,
                                     metadata=tm.metadata, null_text=null_text, alphas_cumprod=alphas_cumprod,
                                     image_features=tm.uses_image))
        return collate(items, accelerator.device)

    module.train()
    if validator is not None and cfg.validation.every and progress.step == 0:
        validator(0, module, accelerator)  # the baseline the later validations compare with
    while progress.step < end:
        step = progress.step
        step_start = time.perf_counter()
        lr = learning_rate(o, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = torch.zeros((), device=accelerator.device)
        for a in range(o.grad_accum):
            batch = local_batch(step, a)
            sync = contextlib.nullcontext() if a == o.grad_accum - 1 else accelerator.no_sync(module)
            with sync:
                with accelerator.autocast():
                    pred = module(batch.x_t, batch.t, batch.context, batch.concat, batch.image)
                loss = sample_loss(pred, batch, frames)
                accelerator.backward(loss / o.grad_accum)
            step_loss += loss.detach() / o.grad_accum
        if o.clip_grad_norm > 0:
            accelerator.clip_grad_norm_(module.parameters(), o.clip_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(accelerator.unwrap_model(module))
        mean_loss = accelerator.reduce(step_loss, "mean").item()
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"atomo_train: loss is {mean_loss} at step {step}; lower optim.lr or use "
                                     "optim.mixed_precision = \"bf16\"/\"no\", then --resume latest")
        losses.append(mean_loss)
        step_time = time.perf_counter() - step_start
        progress.step += 1
        progress.samples += o.batch_size
        if bar is not None:
            now = time.perf_counter()
            rate = (progress.samples - samples_last) / max(now - t_last, 1e-9)
            bar.set_postfix(loss=f"{mean_loss:.4f}", samples_s=f"{rate:.2f}", refresh=False)
            bar.update(1)
            t_last, samples_last = now, progress.samples
        if progress.step % out.log_every == 0:
            if accelerator.log_with:
                accelerator.log({"train/loss": mean_loss, "train/lr": lr}, step=progress.step)
            if accelerator.is_main_process:
                log_line(out.dir, {"step": progress.step, "loss": mean_loss, "lr": lr,
                                   "samples_per_s": round(o.batch_size / max(step_time, 1e-9), 4)})
        last = progress.step == end
        if progress.step % out.save_every == 0 or last:
            weights_path = save_weights(cfg, tm, accelerator, module, ema, progress.step,
                                        final=progress.step == o.max_steps)
        if progress.step % out.state_every == 0 or last:
            checkpoints.save_state(accelerator, out.dir, progress.step, out.keep_states)
        if validator is not None and cfg.validation.every and (progress.step % cfg.validation.every == 0 or last):
            validator(progress.step, module, accelerator)
    if bar is not None:
        bar.close()
    if accelerator.log_with:
        accelerator.end_training()
    return RunResult(losses, weights_path, progress.step, module, optimizer)


def log_line(output_dir: Path, record: dict) -> None:
    """`train_log.jsonl` in output.dir: one line per logged step (also what the README's smoke test reads)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "train_log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def save_weights(cfg, tm, accelerator, module, ema, step: int, final: bool) -> Path | None:
    state = accelerator.get_state_dict(module)  # every process takes part (gathers under FSDP/ZeRO-3)
    if not accelerator.is_main_process:
        return None
    if ema is not None:
        state = ema.shadow
    weights = tm.export(state)
    training = {"config_hash": cfg.hash(), "step": step, "ema": ema is not None, "frames": cfg.data.frames,
                "batch_size": cfg.optim.batch_size, "lr": cfg.optim.lr}
    out = cfg.output
    path = checkpoints.write_weights(out.dir / f"{out.name}-step{step:08d}.safetensors", weights, training)
    if final:
        path = checkpoints.write_weights(out.dir / f"{out.name}.safetensors", weights, training)
    return path
