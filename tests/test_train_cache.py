"""The encoded training cache (atomo_train.data.cache) and its Dataset (host-free, with stand-in encoders whose
outputs can be recomputed from the frames, so every cached tensor is checked against what it must hold)."""
from __future__ import annotations

from pack import module
import errno
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

C = module("atomo_train.data", "cache")
V = module("atomo_train.data", "videos")
DataConfig = module("atomo_train.data.config", "DataConfig")
CachedClips = module("atomo_train.data.dataset", "CachedClips")
ConfigError = module("atomo_train.errors", "ConfigError")
from train_clips import square_x, write_clip

FP = {"checkpoint": "tiny_sd15.safetensors", "vae": "sha256:aaa"}


class Counting:
    """Stand-in encoders: the 'latent' is the 8x8-pooled RGB plus its mean, the text an embedding of the
    caption's characters, the image tokens each frame's mean and std colour. Calls are counted."""

    def __init__(self, tokens=True, fail_on=None):
        self.vae_calls = self.text_calls = self.image_calls = 0
        self.fail_on = fail_on
        self.encoders = C.Encoders(self.vae, self.text, self.image if tokens else None)

    def vae(self, x):
        self.vae_calls += 1
        if self.fail_on is not None and self.vae_calls == self.fail_on:
            raise KeyboardInterrupt
        pooled = F.avg_pool2d(x, 8)
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], 1)

    def text(self, captions):
        self.text_calls += 1
        return torch.stack([torch.tensor([float(sum(map(ord, c)) % 101), float(len(c))]).repeat(3, 1)
                            + torch.arange(3.0)[:, None] for c in captions])

    def image(self, x):
        self.image_calls += 1
        return torch.stack([x.mean((2, 3)), x.std((2, 3))], 1)


def _cfg(tmp_path, **kw):
    d = {"path": str(tmp_path / "v"), "frames": 4, "stride": 2, "start": "fixed", "size": 64,
         "cache_dir": str(tmp_path / "cache"), **kw}
    return DataConfig.from_dict(d)


@pytest.fixture
def videos(tmp_path):
    v = tmp_path / "v"
    write_clip(v, "a", frames=12, caption="square a")
    write_clip(v, "b", frames=12, ext=".gif", caption="square b", speed=3)
    write_clip(v, "short", frames=3, caption="too short")
    write_clip(v, "nocap", frames=12, caption=None)
    return v


def test_cache_holds_encoder_outputs_and_reports_skips(tmp_path, videos):
    cfg = _cfg(tmp_path)
    enc = Counting()
    seen = []
    root = C.build_cache(cfg, enc.encoders, FP, progress=lambda d, t, n: seen.append((d, t, n)))
    assert root == tmp_path / "cache" and seen[-1][:2] == (3, 3)
    index = json.loads((root / "index.json").read_text())
    assert index["fingerprint"]["data"]["size"] == [64, 64] and index["fingerprint"]["models"] == FP
    reasons = {s["path"].split("/")[-1]: s["reason"] for s in index["skipped"]}
    assert reasons == {"nocap.mp4": "no caption file nocap.txt",
                       "short.mp4": "too short: 3 frames, a clip needs 7 (frames=4, stride=2)"}
    ds = CachedClips(root)
    assert [ds[i]["clip_id"] for i in range(len(ds))] == ["a.mp4#0", "b.gif#0"]
    for i, (name, caption) in enumerate([("a.mp4", "square a"), ("b.gif", "square b")]):
        item = ds[i]
        clip = V.load_clips(V.VideoItem(videos / name, caption, name), cfg)[0]
        assert item["latents"].dtype == torch.float32 and item["latents"].shape == (4, 4, 8, 8)
        assert torch.equal(item["latents"], enc.vae(clip.pixels))
        assert torch.equal(item["text"], enc.text([caption])[0])
        assert torch.allclose(item["image_tokens"], enc.image(clip.pixels), atol=1e-3)  # stored as float16
        assert item["image_tokens"].dtype == torch.float32
    assert torch.equal(ds.null_text, enc.text([""])[0])
    # the latents really are the sampled frames: the square moves by stride * speed per cached frame
    b = V.load_clips(V.VideoItem(videos / "b.gif", "", "b.gif"), cfg)[0]
    xs = [square_x(f.numpy()) for f in b.pixels]  # 64x48 -> 85x64, 10 columns cut each side: frame 0 is cut
    assert xs[3] - xs[2] == pytest.approx(2 * 3 * 64 / 48, abs=1.0)
    assert len(CachedClips(root, "val")) == 0


def test_rerun_is_incremental(tmp_path, videos):
    cfg = _cfg(tmp_path)
    enc = Counting()
    C.build_cache(cfg, enc.encoders, FP)
    assert (enc.vae_calls, enc.text_calls) == (2, 3)  # 2 clips; 2 captions + the empty caption
    C.build_cache(cfg, enc.encoders, FP)
    assert (enc.vae_calls, enc.text_calls) == (2, 3)  # nothing encoded again
    write_clip(videos, "c", frames=12, caption="square c")
    (videos / "a.txt").write_text("square a, new caption")
    C.build_cache(cfg, enc.encoders, FP)
    assert enc.vae_calls == 4  # only the new video and the re-captioned one
    ds = CachedClips(cfg.cache_path)
    assert [ds[i]["clip_id"] for i in range(len(ds))] == ["a.mp4#0", "b.gif#0", "c.mp4#0"]
    assert torch.equal(ds[0]["text"], enc.text(["square a, new caption"])[0])
    (videos / "b.gif").unlink()
    C.build_cache(cfg, enc.encoders, FP)
    assert [r["clip_id"] for r in CachedClips(cfg.cache_path).records] == ["a.mp4#0", "c.mp4#0"]


def test_other_settings_are_refused_or_rebuilt(tmp_path, videos):
    enc = Counting()
    C.build_cache(_cfg(tmp_path), enc.encoders, FP)
    with pytest.raises(ConfigError) as e:
        C.build_cache(_cfg(tmp_path, size=128), enc.encoders, FP)
    assert e.value.key == "data.cache_dir"
    assert "data.size: cache [64, 64], now [128, 128]" in str(e.value) and "--rebuild" in str(e.value)
    with pytest.raises(ConfigError, match=r'models.vae: cache "sha256:aaa", now "sha256:bbb"'):
        C.build_cache(_cfg(tmp_path), enc.encoders, {**FP, "vae": "sha256:bbb"})
    with pytest.raises(ConfigError, match="image_tokens: cache true, now false"):
        C.build_cache(_cfg(tmp_path), Counting(tokens=False).encoders, FP)
    with pytest.raises(ConfigError, match="data.frames: cache 4, now 5"):
        C.build_cache(_cfg(tmp_path, frames=5), enc.encoders, FP)
    calls = enc.vae_calls
    C.build_cache(_cfg(tmp_path, size=128), enc.encoders, FP, rebuild=True)
    assert enc.vae_calls == calls + 2
    ds = CachedClips(tmp_path / "cache")
    assert ds[0]["latents"].shape == (4, 4, 16, 16) and ds.fingerprint["data"]["size"] == [128, 128]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".lock", "index.json",
                                                                       "shard-00000.safetensors"]
    want = C.cache_fingerprint(_cfg(tmp_path, size=128), FP, with_image_tokens=True)
    assert len(CachedClips(tmp_path / "cache", expect=want)) == 2
    with pytest.raises(ConfigError, match=r"data.size: cache \[128, 128\], now \[64, 64\]"):
        CachedClips(tmp_path / "cache", expect=C.cache_fingerprint(_cfg(tmp_path), FP, with_image_tokens=True))
    info = C.summary(tmp_path / "cache")
    assert (info["train"], info["val"], info["shards"]) == (2, 0, 1) and len(info["skipped"]) == 2
    assert info["bytes"] == (tmp_path / "cache" / "shard-00000.safetensors").stat().st_size


def test_interrupted_build_resumes_without_redoing_finished_shards(tmp_path, videos):
    for n in "cdef":
        write_clip(videos, n, frames=8, caption=f"square {n}")
    cfg = _cfg(tmp_path)
    enc = Counting(fail_on=4)  # interrupted while encoding the 4th video
    with pytest.raises(KeyboardInterrupt):
        C.build_cache(cfg, enc.encoders, FP, shard_clips=1)
    root = cfg.cache_path
    index = json.loads((root / "index.json").read_text())
    assert sorted(index["videos"]["data"]) == ["a.mp4", "b.gif", "c.mp4"]  # 3 complete shards
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]
    (root / "shard-00007.safetensors.tmp-999").write_bytes(b"half a shard")  # a process killed mid-write
    enc2 = Counting()
    C.build_cache(cfg, enc2.encoders, FP, shard_clips=1)
    assert enc2.vae_calls == 3  # d, e, f only
    ds = CachedClips(root)
    assert [r["clip_id"] for r in ds.records] == ["a.mp4#0", "b.gif#0", "c.mp4#0", "d.mp4#0", "e.mp4#0", "f.mp4#0"]
    assert not (root / "shard-00007.safetensors.tmp-999").exists()
    assert torch.equal(ds[5]["latents"], enc2.vae(V.load_clips(V.VideoItem(videos / "f.mp4", "", "f.mp4"),
                                                                cfg)[0].pixels))


def test_disk_full_is_a_clear_error_and_keeps_the_last_good_index(tmp_path, videos, monkeypatch):
    cfg = _cfg(tmp_path)
    C.build_cache(cfg, Counting().encoders, FP)
    before = (cfg.cache_path / "index.json").read_text()
    write_clip(videos, "c", frames=12, caption="square c")

    def full(tensors, filename, metadata=None):
        open(filename, "wb").write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C, "save_file", full)
    with pytest.raises(ConfigError) as e:
        C.build_cache(cfg, Counting().encoders, FP)
    assert e.value.key == "data.cache_dir"
    assert "No space left on device" in str(e.value) and "free disk space" in str(e.value)
    assert (cfg.cache_path / "index.json").read_text() == before
    assert not [p for p in cfg.cache_path.iterdir() if ".tmp-" in p.name]


def test_splits_by_fraction_and_by_val_path(tmp_path):
    v = tmp_path / "v"
    for i in range(6):
        write_clip(v, f"s{i}", frames=8, caption=f"clip {i}")
    enc = Counting(tokens=False)
    cfg = _cfg(tmp_path, val_fraction=0.34)
    C.build_cache(cfg, enc.encoders, FP)
    train, val = CachedClips(cfg.cache_path, "train"), CachedClips(cfg.cache_path, "val")
    t_ids, v_ids = {r["clip_id"] for r in train.records}, {r["clip_id"] for r in val.records}
    assert v_ids and len(t_ids | v_ids) == 6 and not t_ids & v_ids
    assert "image_tokens" not in train[0] and not train.has_image_tokens
    write_clip(v, "s6", frames=8, caption="clip 6")
    C.build_cache(cfg, enc.encoders, FP)  # a new video does not move the held-out ones to train
    assert v_ids <= {r["clip_id"] for r in CachedClips(cfg.cache_path, "val").records}
    assert t_ids <= {r["clip_id"] for r in CachedClips(cfg.cache_path, "train").records}
    assert enc.vae_calls == 7  # changing the split re-encodes nothing
    write_clip(tmp_path / "w", "held", frames=8, caption="held out")
    cfg2 = _cfg(tmp_path, val_path=str(tmp_path / "w"))
    C.build_cache(cfg2, enc.encoders, FP)
    assert [r["clip_id"] for r in CachedClips(cfg2.cache_path, "val").records] == ["held.mp4#0"]
    assert len(CachedClips(cfg2.cache_path, "train")) == 7 and enc.vae_calls == 8


def test_dataset_with_distributed_sampler_and_workers(tmp_path, videos):
    for n in "cde":
        write_clip(videos, n, frames=8, caption=f"square {n}")
    cfg = _cfg(tmp_path, clips_per_video=2)
    C.build_cache(cfg, Counting().encoders, FP)
    ds = CachedClips(cfg.cache_path)
    ids = [r["clip_id"] for r in ds.records]
    assert len(ids) == 10 and ids == [r["clip_id"] for r in CachedClips(cfg.cache_path).records]
    parts = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=3)) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(10)) and len(parts[0]) == 5
    loader = DataLoader(ds, batch_size=2, sampler=DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False),
                        num_workers=1)
    batches = list(loader)
    got = [cid for b in batches for cid in b["clip_id"]]
    assert got == [ids[i] for i in range(1, 10, 2)]
    assert batches[0]["latents"].shape == (2, 4, 4, 8, 8) and batches[0]["image_tokens"].shape == (2, 4, 2, 3)
    assert torch.equal(batches[0]["latents"][0], ds[1]["latents"])


def test_encoder_contract_and_missing_cache_errors(tmp_path, videos):
    bad = C.Encoders(lambda x: torch.zeros(x.shape[0], 4, 4, 4), Counting().text)
    with pytest.raises(ValueError, match=r"Encoders.vae_encode returned \(4, 4, 4, 4\) .* \[F, 4, H/8, W/8\]"):
        C.build_cache(_cfg(tmp_path), bad, FP)
    with pytest.raises(ConfigError, match="no training cache in .* build it first"):
        CachedClips(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="config key 'data.path': no video gave a training clip .*too short"):
        C.build_cache(_cfg(tmp_path, frames=16, cache_dir=str(tmp_path / "c2")), Counting().encoders, FP)


def test_val_fraction_holds_out_that_share():
    entry = {"clips": [{"clip_id": "x"}]}
    for fraction in (0.1, 0.3):
        index = {"videos": {"data": {f"v{i}.mp4": json.loads(json.dumps(entry)) for i in range(2000)}, "val": {}}}
        C._assign_splits(index, DataConfig.from_dict({"path": "v", "val_fraction": fraction}))
        held = sum(e["clips"][0]["split"] == "val" for e in index["videos"]["data"].values())
        assert held / 2000 == pytest.approx(fraction, abs=0.03)
    two = {"videos": {"data": {"a": json.loads(json.dumps(entry)), "b": json.loads(json.dumps(entry))}, "val": {}}}
    C._assign_splits(two, DataConfig.from_dict({"path": "v", "val_fraction": 0.01}))
    assert sorted(e["clips"][0]["split"] for e in two["videos"]["data"].values()) == ["train", "val"]
    C._assign_splits(two, DataConfig.from_dict({"path": "v", "val_fraction": 0.9}))
    assert sorted(e["clips"][0]["split"] for e in two["videos"]["data"].values()) == ["train", "val"]


def test_concurrent_builders_wait_for_each_other(tmp_path, videos):
    import threading
    import time

    cfg = _cfg(tmp_path)
    cfg.cache_path.mkdir(parents=True)
    first, second = Counting(), Counting()
    started = threading.Event()

    def slow_vae(x):
        started.set()
        time.sleep(0.5)
        return first.vae(x)

    t = threading.Thread(target=C.build_cache, args=(cfg, C.Encoders(slow_vae, first.text, first.image), FP))
    t.start()
    started.wait(10)
    C.build_cache(cfg, second.encoders, FP)  # blocks until the first build is done, then has nothing to do
    t.join()
    assert first.vae_calls == 2 and second.vae_calls == 0
    assert len(CachedClips(cfg.cache_path)) == 2
