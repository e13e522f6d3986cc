"""The encoded training cache: per-frame VAE latents, caption embeddings and (optionally) CLIP-vision tokens of
every frame, in safetensors shards listed by `index.json`.

Only encoder outputs are cached. The conditioning frame, the given-frame mask and the condition dropout are
drawn at train time (`atomo_train.draws`), which is why image tokens are kept for every frame: any frame can be
the conditioning frame. The index holds a fingerprint of the sampling settings and the model files; a cache made
for other settings is refused (or rebuilt on request), never silently reused. Every file is written to a temporary
name and renamed into place, and the index is rewritten after each shard, so an interrupted or failed build loses
at most one shard of work and the next build carries on from there. Videos already cached and unchanged (size,
modification time, caption) are not encoded again; new ones are added.

A lock file serialises builders (fcntl, where the platform has it): every process of a distributed run may call
`build_cache`; the first encodes, the others wait and then find nothing left to do.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from ..errors import ConfigError
from .config import DataConfig
from .videos import VideoError, VideoItem, discover, load_clips

log = logging.getLogger("atomo_train.data")

CACHE_VERSION = 1
INDEX = "index.json"
SHARD_CLIPS = 32
SHARD_BYTES = 512 * 2**20  # a shard is written after 32 clips or 512 MiB, whichever comes first
TOKEN_DTYPE = torch.float16  # CLIP tokens of every frame are the bulk of the cache; latents/text stay float32


@dataclass(frozen=True)
class Encoders:
    """Encoders injected by the caller (the loop builds them from ComfyUI's VAE, CLIP and CLIP vision).

    vae_encode: float [F,3,H,W] in [0,1] -> model-space (already scaled) latents [F,4,H/8,W/8]
    text_encode: list of N captions -> [N,L,D] cross-attention context
    image_encode: float [F,3,H,W] in [0,1] -> [F,T,D] CLIP-vision tokens per frame, or None to cache none
    """

    vae_encode: Callable[[torch.Tensor], torch.Tensor]
    text_encode: Callable[[list[str]], torch.Tensor]
    image_encode: Callable[[torch.Tensor], torch.Tensor] | None = None


def cache_fingerprint(cfg: DataConfig, fingerprint: dict, with_image_tokens: bool) -> dict:
    """What the cached tensors depend on: sampling settings, the caller's model fingerprint, the cache layout."""
    doc = {"version": CACHE_VERSION, "data": cfg.sampling_settings(), "models": fingerprint,
           "image_tokens": with_image_tokens}
    return json.loads(json.dumps(doc, sort_keys=True, default=str))


def build_cache(cfg: DataConfig, encoders: Encoders, fingerprint: dict, *, rebuild: bool = False,
                progress: Callable[[int, int, str], None] | None = None, shard_clips: int = SHARD_CLIPS) -> Path:
    """Encode every usable video of `cfg` (and `cfg.val_path`) into `cfg.cache_path`; return that folder.

    `fingerprint` names the model files (names, hashes) the encoders come from. `progress(done, total, name)` is
    called once per video. Unusable videos are logged and listed under "skipped" in the index.
    """
    sources = {"data": discover(cfg.path, "data.path")}
    if cfg.val_path is not None:
        sources["val"] = discover(cfg.val_path, "data.val_path")
    root = cfg.cache_path
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError("data.cache_dir", f"cannot create the cache folder '{root}' ({type(e).__name__}); set "
                          "data.cache_dir to a folder you can write to") from e
    want = cache_fingerprint(cfg, fingerprint, encoders.image_encode is not None)
    with _locked(root):
        return _build(cfg, encoders, root, want, sources, rebuild, progress, shard_clips)


@contextmanager
def _locked(root: Path):
    try:
        import fcntl
    except ImportError:  # Windows: one process per machine there anyway
        yield
        return
    with open(root / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _build(cfg, encoders, root, want, sources, rebuild, progress, shard_clips) -> Path:
    writer = _Writer(root, want, rebuild)
    index = writer.index

    todo = [(src, it) for src, (items, _) in sources.items() for it in items]
    total, done = len(todo), 0
    if "null_text" not in index:
        writer.add_null_text(_text(encoders, [""])[0])
    for src, item in todo:
        sig = _signature(item)
        entry = index["videos"][src].get(item.name)
        if entry is None or entry["signature"] != sig:
            try:
                clips = load_clips(item, cfg)
            except VideoError as e:
                writer.add_skipped(src, item, sig, str(e))
            else:
                text = _text(encoders, [item.caption])[0]
                encoded = [(c.clip_id, c.frame_indices, _latents(encoders, c.pixels),
                            _tokens(encoders, c.pixels)) for c in clips]
                writer.add_video(src, item, sig, text, encoded)
                if writer.pending_clips >= shard_clips or writer.pending_bytes() >= SHARD_BYTES:
                    writer.flush()
        done += 1
        if progress is not None:
            progress(done, total, item.name)
    writer.finish(sources, cfg)
    if not any(c["split"] == "train" for c in _clips(index)):
        reasons = "; ".join(f"{v['path']}: {v['reason']}" for v in index["skipped"][:5])
        raise ConfigError("data.path", f"no video gave a training clip ({reasons}); use longer videos, or fewer "
                          f"frames / a smaller stride")
    return root


# --------------------------------------------------------------------------------------------- encoding checks

def _latents(enc: Encoders, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        z = enc.vae_encode(pixels)
    f, _, h, w = pixels.shape
    if tuple(z.shape) != (f, 4, h // 8, w // 8):
        raise ValueError(f"Encoders.vae_encode returned {tuple(z.shape)} for {f} frames of {w}x{h}; it must return "
                         f"[F, 4, H/8, W/8] = {(f, 4, h // 8, w // 8)} (an SD1.5 VAE)")
    return z.detach().float().cpu().contiguous()


def _text(enc: Encoders, captions: list[str]) -> torch.Tensor:
    with torch.no_grad():
        t = enc.text_encode(captions)
    if t.dim() != 3 or t.shape[0] != len(captions):
        raise ValueError(f"Encoders.text_encode returned {tuple(t.shape)} for {len(captions)} captions; it must "
                         f"return [N, L, D]")
    return t.detach().float().cpu()


def _tokens(enc: Encoders, pixels: torch.Tensor) -> torch.Tensor | None:
    if enc.image_encode is None:
        return None
    with torch.no_grad():
        t = enc.image_encode(pixels)
    if t.dim() != 3 or t.shape[0] != pixels.shape[0]:
        raise ValueError(f"Encoders.image_encode returned {tuple(t.shape)} for {pixels.shape[0]} frames; it must "
                         f"return [F, T, D] (tokens of every frame)")
    return t.detach().to(TOKEN_DTYPE).cpu().contiguous()


def _signature(item: VideoItem) -> list:
    st = item.path.stat()
    return [st.st_size, st.st_mtime_ns, hashlib.sha1(item.caption.encode()).hexdigest()]


def _clips(index: dict):
    for src in index["videos"].values():
        for entry in src.values():
            yield from entry.get("clips", [])


# --------------------------------------------------------------------------------------------- files

def load_index(root: Path) -> dict | None:
    path = Path(root) / INDEX
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError("data.cache_dir", f"the cache index '{path}' is unreadable ({e}); rebuild the cache "
                          f"(`cache --rebuild`) or choose another data.cache_dir") from e


def check_fingerprint(root: Path, index: dict, want: dict) -> None:
    """Refuse a cache built for other settings, naming each difference."""
    if index.get("fingerprint") != want:
        diffs = _differences(index.get("fingerprint"), want)
        raise ConfigError("data.cache_dir", f"the cache in '{root}' was built for other settings "
                          f"({'; '.join(diffs)}); rebuild it (`python -m atomo_train cache --rebuild`) or set "
                          f"another data.cache_dir")


def summary(root: Path) -> dict:
    """Counts for the cache step's report: clips per split, skipped videos (path, reason), shards, bytes."""
    index = load_index(root)
    if index is None:
        return {"train": 0, "val": 0, "skipped": [], "shards": 0, "bytes": 0}
    clips = list(_clips(index))
    return {"train": sum(c.get("split") == "train" for c in clips), "val": sum(c.get("split") == "val" for c in clips),
            "skipped": index.get("skipped", []), "shards": len(index["shards"]),
            "bytes": sum((Path(root) / s).stat().st_size for s in index["shards"] if (Path(root) / s).exists())}


def _differences(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _differences(old.get(k), new.get(k), f"{prefix}{'.' if prefix else ''}{k}")
        return out
    return [] if old == new else [f"{prefix}: cache {json.dumps(old)}, now {json.dumps(new)}"]


def _owned_files(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.name == INDEX or (p.name.startswith("shard-") and
                                                            ".safetensors" in p.name) or ".tmp-" in p.name]


class _Writer:
    """Accumulates encoded videos, writes them as shards and keeps `index.json` in step, atomically."""

    def __init__(self, root: Path, fingerprint: dict, rebuild: bool):
        self.root = root
        for p in root.iterdir():  # leftovers of an interrupted write
            if ".tmp-" in p.name:
                p.unlink(missing_ok=True)
        index = load_index(root) if not rebuild else None
        if index is not None:
            check_fingerprint(root, index, fingerprint)
        if rebuild or index is None:
            for p in _owned_files(root):
                p.unlink()
            index = {"version": CACHE_VERSION, "fingerprint": fingerprint, "shards": [],
                     "videos": {"data": {}, "val": {}}, "skipped": []}
        else:  # keep only entries whose shard exists
            present = {p.name for p in root.glob("shard-*.safetensors")}
            index["shards"] = [s for s in index["shards"] if s in present]
            for src in index["videos"].values():
                for name in [n for n, e in src.items() if any(c["shard"] not in present for c in e["clips"])]:
                    del src[name]
            if index.get("null_text", {}).get("shard") not in present:
                index.pop("null_text", None)
        self.index = index
        self.tensors: dict[str, torch.Tensor] = {}
        self.pending: list[tuple[str, str, dict]] = []  # (source, name, entry) waiting for the shard
        self.pending_clips = 0
        self.null_text: torch.Tensor | None = None
        self.shard_no = 1 + max([int(s[6:11]) for s in index["shards"]] or [-1])

    def _shard(self) -> str:
        return f"shard-{self.shard_no:05d}.safetensors"

    def add_null_text(self, t: torch.Tensor) -> None:
        self.tensors["null_text"] = t.contiguous()
        self.null_text = t

    def add_skipped(self, src: str, item: VideoItem, sig: list, reason: str) -> None:
        self.pending.append((src, item.name, {"path": str(item.path), "signature": sig, "reason": reason,
                                              "clips": []}))

    def add_video(self, src: str, item: VideoItem, sig: list, text: torch.Tensor, encoded) -> None:
        n = len(self.pending)
        self.tensors[f"{n}/text"] = text.contiguous()
        clips = []
        for k, (clip_id, frames, latents, tokens) in enumerate(encoded):
            rec = {"clip_id": clip_id, "shard": self._shard(), "frames": frames, "latents": f"{n}/{k}/latents",
                   "text": f"{n}/text", "image_tokens": None, "caption": item.caption}
            self.tensors[rec["latents"]] = latents
            if tokens is not None:
                rec["image_tokens"] = f"{n}/{k}/image_tokens"
                self.tensors[rec["image_tokens"]] = tokens
            clips.append(rec)
        self.pending.append((src, item.name, {"path": str(item.path), "signature": sig, "clips": clips}))
        self.pending_clips += len(clips)

    def pending_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def flush(self) -> None:
        if self.tensors:
            shard = self._shard()
            self._atomic(self.root / shard, lambda tmp: save_file(self.tensors, str(tmp),
                                                                 metadata={"atomovideo_cache": str(CACHE_VERSION)}))
            self.index["shards"].append(shard)
            if self.null_text is not None:
                self.index["null_text"] = {"shard": shard, "key": "null_text"}
            self.shard_no += 1
        for src, name, entry in self.pending:
            self.index["videos"][src][name] = entry
        self.tensors, self.pending, self.pending_clips, self.null_text = {}, [], 0, None
        self.write_index()

    def finish(self, sources: dict, cfg: DataConfig) -> None:
        self.flush()
        index = self.index
        for src, (items, _) in sources.items():  # videos gone from the data source leave the index
            names = {it.name for it in items}
            for name in [n for n in index["videos"][src] if n not in names]:
                del index["videos"][src][name]
        if "val" not in sources:
            index["videos"]["val"] = {}
        _assign_splits(index, cfg)
        index["skipped"] = [{"path": str(s.path), "reason": s.reason} for _, sk in sources.values() for s in sk]
        index["skipped"] += [{"path": e["path"], "reason": e["reason"]} for src in index["videos"].values()
                             for e in src.values() if "reason" in e]
        for s in index["skipped"]:
            log.warning("not used for training: %s: %s", s["path"], s["reason"])
        self.write_index()

    def write_index(self) -> None:
        text = json.dumps(self.index, indent=1, sort_keys=True)
        self._atomic(self.root / INDEX, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def _atomic(self, dest: Path, write: Callable[[Path], None]) -> None:
        tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
        try:
            write(tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            free = shutil.disk_usage(self.root).free
            raise ConfigError("data.cache_dir", f"writing '{dest}' failed ({e}; {free / 2**30:.1f} GiB free); free "
                              f"disk space or point data.cache_dir at a larger disk, then run again: the cache "
                              f"carries on from its last complete shard") from e
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _assign_splits(index: dict, cfg: DataConfig) -> None:
    """val_path videos are "val". With val_fraction, a data.path video is held out when a seeded hash of its name
    falls below the fraction, so its split never changes as videos are added or removed; a set of two or more
    usable videos always keeps at least one video on each side."""
    def u(name: str) -> float:
        return int(hashlib.sha256(f"{cfg.seed}:{name}".encode()).hexdigest()[:15], 16) / 16 ** 15

    usable = sorted((n for n, e in index["videos"]["data"].items() if e["clips"]), key=u)
    val = {n for n in usable if u(n) < cfg.val_fraction}
    if cfg.val_fraction > 0 and len(usable) >= 2:
        if not val:
            val = {usable[0]}
        elif len(val) == len(usable):
            val.discard(usable[-1])
    for name, entry in index["videos"]["data"].items():
        for c in entry["clips"]:
            c["split"] = "val" if name in val else "train"
    for entry in index["videos"]["val"].values():
        for c in entry["clips"]:
            c["split"] = "val"
