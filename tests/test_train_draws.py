"""Train-time mask and dropout draws (atomo_train.draws): frequencies, shapes, config errors."""
from __future__ import annotations

from pack import module
import pytest
import torch

DrawConfig, condition_inputs, draw, loss_frames = module("atomo_train.draws", "DrawConfig", "condition_inputs", "draw", "loss_frames")
ConfigError = module("atomo_train.errors", "ConfigError")

N = 10_000


def _many(cfg: DrawConfig, frames: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [draw(g, frames, cfg) for _ in range(N)]


def _freq(draws, pred) -> float:
    return sum(1 for d in draws if pred(d)) / len(draws)


def test_mask_kinds_and_dropout_match_configured_frequencies():
    cfg = DrawConfig.from_dict({"first_frame": 2.0, "first_k": 1.0, "keyframes": 1.0, "k_max": 4,
                                "keyframes_max": 3, "dropout": 0.1})
    draws = _many(cfg)
    assert _freq(draws, lambda d: d.kind == "first_frame") == pytest.approx(0.5, abs=0.02)
    assert _freq(draws, lambda d: d.kind == "first_k") == pytest.approx(0.25, abs=0.02)
    assert _freq(draws, lambda d: d.kind == "keyframes") == pytest.approx(0.25, abs=0.02)
    # DynamiCrafter/SVD rule: text only, image only and both each dropped with probability p.
    assert _freq(draws, lambda d: d.drop_text and not d.drop_concat) == pytest.approx(0.1, abs=0.02)
    assert _freq(draws, lambda d: d.drop_concat and not d.drop_text) == pytest.approx(0.1, abs=0.02)
    assert _freq(draws, lambda d: d.drop_text and d.drop_concat) == pytest.approx(0.1, abs=0.02)
    assert _freq(draws, lambda d: not d.drop_text and not d.drop_concat) == pytest.approx(0.7, abs=0.02)
    # CLIP tokens and concat are one "image" modality by default: dropped together.
    assert all(d.drop_image_tokens == d.drop_concat for d in draws)


def test_mask_shapes_per_kind():
    cfg = DrawConfig.from_dict({"first_frame": 1.0, "first_k": 1.0, "keyframes": 1.0, "k_max": 4,
                                "keyframes_max": 3, "dropout": 0.0})
    draws = _many(cfg, frames=8)
    ks, ns = [], []
    for d in draws:
        assert d.given.dtype == torch.bool and d.given.shape == (8,)
        n = int(d.given.sum())
        if d.kind == "first_frame":
            assert d.given.tolist() == [True] + [False] * 7
        elif d.kind == "first_k":
            assert d.given[:n].all() and not d.given[n:].any()
            ks.append(n)
        else:
            ns.append(n)
        assert d.image_frame == int(d.given.nonzero()[0, 0])
    # k uniform on 1..k_max, keyframe count uniform on 1..keyframes_max
    for k in range(1, 5):
        assert ks.count(k) / len(ks) == pytest.approx(0.25, abs=0.03)
    for n in range(1, 4):
        assert ns.count(n) / len(ns) == pytest.approx(1 / 3, abs=0.03)
    # keyframes land anywhere, not only at the start
    keyframe_draws = [d for d in draws if d.kind == "keyframes"]
    per_frame = torch.stack([d.given for d in keyframe_draws]).float().mean(0)
    assert per_frame.min() > 0.15 and per_frame.max() < 0.35  # E = 2/8 = 0.25 per frame


def test_k_never_covers_every_frame():
    cfg = DrawConfig.from_dict({"first_frame": 0.0, "first_k": 1.0, "k_max": 10, "dropout": 0.0})
    sums = {int(d.given.sum()) for d in _many(cfg, frames=3)}
    assert sums == {1, 2}


def test_separate_switches_for_image_modalities():
    only_tokens = DrawConfig.from_dict({"dropout": 0.1, "dropout_concat": False})
    draws = _many(only_tokens, seed=1)
    assert not any(d.drop_concat for d in draws)
    assert _freq(draws, lambda d: d.drop_image_tokens) == pytest.approx(0.2, abs=0.02)  # p<=r<3p
    assert all(d.given[0] for d in draws)  # the concat is never dropped, so frame 0 is always given
    only_concat = DrawConfig.from_dict({"dropout": 0.1, "dropout_image_tokens": False})
    draws = _many(only_concat, seed=2)
    assert not any(d.drop_image_tokens for d in draws)
    dropped = [d for d in draws if d.drop_concat]
    assert len(dropped) / N == pytest.approx(0.2, abs=0.02)
    assert all(not d.given.any() for d in dropped)  # nothing is shown when the concat input is dropped


def test_same_seed_same_draws():
    cfg = DrawConfig.from_dict({"first_k": 1.0, "keyframes": 1.0, "dropout": 0.1})
    a = [draw(torch.Generator().manual_seed(7), 16, cfg) for _ in range(3)]
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(50):
        x, y = draw(g1, 16, cfg), draw(g2, 16, cfg)
        assert torch.equal(x.given, y.given) and (x.kind, x.drop_text, x.drop_concat) == (y.kind, y.drop_text,
                                                                                          y.drop_concat)
    assert len({str(d.given.tolist()) for d in a}) == 1


def test_condition_inputs_noise_and_loss_frames():
    cfg = DrawConfig.from_dict({"first_k": 1.0, "first_frame": 0.0, "k_max": 2, "dropout": 0.0,
                                "noise_aug": 0.5, "loss_on_given_frames": False})
    g = torch.Generator().manual_seed(3)
    d = draw(g, 6, cfg)
    k = int(d.given.sum())
    lat = torch.randn(6, 4, 8, 8)
    image, mask = condition_inputs(lat, d, cfg, torch.Generator().manual_seed(0))
    assert mask.shape == (6, 1, 8, 8) and mask[:k].eq(1).all() and mask[k:].eq(0).all()
    assert image[k:].eq(0).all()
    noise = image[:k] - lat[:k]
    assert noise.std().item() == pytest.approx(0.5, rel=0.2)
    assert loss_frames(d, cfg).tolist() == [False] * k + [True] * (6 - k)
    clean, _ = condition_inputs(lat, d, DrawConfig(first_k=1.0, noise_aug=0.0))
    assert torch.equal(clean[:k], lat[:k])
    assert loss_frames(d, DrawConfig()).all()


@pytest.mark.parametrize("d, key", [
    ({"dropout": 0.4}, "conditioning.dropout"),
    ({"first_frame": 0.0}, "conditioning.first_frame"),
    ({"first_frame": -1.0}, "conditioning.first_frame"),
    ({"k_max": 0}, "conditioning.k_max"),
    ({"noise_aug": "a"}, "conditioning.noise_aug"),
    ({"dropout_concat": 1}, "conditioning.dropout_concat"),
    ({"drop_out": 0.1}, "conditioning.drop_out"),
])
def test_bad_conditioning_keys(d, key):
    with pytest.raises(ConfigError) as e:
        DrawConfig.from_dict(d)
    assert e.value.key == key and f"config key '{key}'" in str(e.value)


def test_defaults():
    assert DrawConfig.from_dict({}) == DrawConfig() == DrawConfig.from_dict(None)
    assert "did you mean 'dropout'" in str(pytest.raises(ConfigError, DrawConfig.from_dict, {"dropot": 0.1}).value)
