"""The cached clips as a map-style torch Dataset (works with DistributedSampler and DataLoader workers)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from torch.utils.data import Dataset

from ..errors import ConfigError
from .cache import check_fingerprint, load_index

SPLITS = ("train", "val")


class CachedClips(Dataset):
    """Items: {"latents": float32 [F,4,h,w], "text": float32 [L,D], "image_tokens": float32 [F,T,D] (only when
    the cache has them), "clip_id": str}, in a fixed order (by source, then clip id).

    `expect`: the fingerprint this run needs (`cache.cache_fingerprint(...)`); a cache made for anything else is
    refused, as `build_cache` does."""

    def __init__(self, cache_dir: str | Path, split: str = "train", expect: dict | None = None):
        if split not in SPLITS:
            raise ValueError(f"CachedClips: split must be one of {SPLITS}, got {split!r}")
        self.root = Path(cache_dir)
        index = load_index(self.root)
        if index is None:
            raise ConfigError("data.cache_dir", f"no training cache in '{self.root}'; build it first "
                              f"(`python -m atomo_train cache --config my_run.toml`)")
        if expect is not None:
            check_fingerprint(self.root, index, expect)
        self.fingerprint: dict = index["fingerprint"]
        self.skipped: list[dict] = index.get("skipped", [])
        self.records = [c for src in ("data", "val") for name in sorted(index["videos"].get(src, {}))
                        for c in index["videos"][src][name]["clips"] if c.get("split") == split]
        self.has_image_tokens = bool(self.fingerprint.get("image_tokens"))
        self._null_text_ref = index.get("null_text")
        self._files: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _get(self, shard: str, key: str) -> torch.Tensor:
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = safe_open(str(self.root / shard), framework="pt")
        return f.get_tensor(key)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        item = {"latents": self._get(rec["shard"], rec["latents"]).float(),
                "text": self._get(rec["shard"], rec["text"]).float(),
                "clip_id": rec["clip_id"]}
        if rec.get("image_tokens"):
            item["image_tokens"] = self._get(rec["shard"], rec["image_tokens"]).float()
        return item

    @property
    def null_text(self) -> torch.Tensor:
        """float32 [L,D]: the empty caption's embedding, what a dropped text condition becomes."""
        ref = self._null_text_ref
        if ref is None:
            raise ConfigError("data.cache_dir", f"the cache in '{self.root}' has no empty-caption embedding; "
                              f"rebuild it (`cache --rebuild`)")
        return self._get(ref["shard"], ref["key"]).float()

    def __getstate__(self):  # open safetensors handles stay in their process
        state = dict(self.__dict__)
        state["_files"] = {}
        return state
