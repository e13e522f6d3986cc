"""Temporal layers without the host: identity at init, frame mixing, batching order, reference maths."""
import math

import pytest
import torch

from pack import core

tl = core("temporal_layers")
ATTENTION, CONV, atomovideo_sites, check_sites_fit, sd15_layout = core(
    "unet_sites", "ATTENTION", "CONV", "atomovideo_sites", "check_sites_fit", "sd15_layout")


def randomize_(layer, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel() if p.ndim > 1 else 4))
    return layer


LAYERS = {
    "conv": lambda: tl.TemporalConv(64),
    "attention": lambda: tl.TemporalAttention(64, heads=4, max_frames=16),
    "light": lambda: tl.TemporalAttention(64, heads=4, max_frames=16, projections=False),
    "animatediff": lambda: tl.TemporalAttention(64, heads=8, max_frames=24, attention_blocks=2, feed_forward=True),
}


@pytest.mark.parametrize("kind", LAYERS)
def test_fresh_layer_is_the_identity(kind):
    x = torch.randn(2 * 16, 64, 5, 3)
    assert torch.equal(LAYERS[kind]()(x, 16), x)


@pytest.mark.parametrize("kind", LAYERS)
def test_nonzero_layer_mixes_frames_and_zero_layer_does_not(kind):
    frames = 6
    x = torch.randn(frames, 64, 4, 4)
    poked = x.clone()
    poked[2] += torch.randn(64, 4, 4)  # not a constant: per-frame GroupNorm would remove that
    layer = randomize_(LAYERS[kind]())
    delta = (layer(poked, frames) - layer(x, frames)).abs().flatten(1).amax(1)
    assert (delta[[1, 3]] > 1e-4).all(), delta  # neighbours of frame 2 change
    if kind != "conv":  # attention reaches every frame, a 3-tap conv only the neighbours
        assert (delta > 1e-4).all(), delta
    tl.zero_outputs_(layer)
    delta = (layer(poked, frames) - layer(x, frames)).abs().flatten(1).amax(1)
    assert delta[2] > 0 and delta[[0, 1, 3, 4, 5]].max() == 0


@pytest.mark.parametrize("kind", LAYERS)
def test_single_frame(kind):
    x = torch.randn(3, 64, 4, 4)
    out = randomize_(LAYERS[kind]())(x, 1)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", LAYERS)
def test_videos_in_a_batch_do_not_see_each_other_whatever_their_order(kind):
    """ComfyUI may batch [cond, uncond] or [uncond, cond]: each F-frame chunk is its own video."""
    frames = 4
    layer = randomize_(LAYERS[kind]())
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(frames, 64, 3, 3, generator=g), torch.randn(frames, 64, 3, 3, generator=g)
    ab = layer(torch.cat([a, b]), frames)
    ba = layer(torch.cat([b, a]), frames)
    # float32 round-off of a batched convolution differs from a single one by ~1e-6 on values of size ~3 (a CI
    # run failed at atol 1e-6); a video leaking into another changes the output by O(1).
    assert torch.allclose(ab[:frames], ba[frames:], atol=1e-5)
    assert torch.allclose(ab[:frames], layer(a, frames), atol=1e-5)
    assert not torch.allclose(layer(torch.cat([a, b]), 2 * frames)[:frames], ab[:frames], atol=1e-2)


def test_attention_matches_animatediff_reference_maths():
    """One AnimateDiff temporal transformer written out with einsum, against the layer."""
    C, F, H, W, heads = 64, 5, 2, 3, 8
    layer = randomize_(tl.TemporalAttention(C, heads=heads, max_frames=24, attention_blocks=2, feed_forward=True))
    x = torch.randn(F, C, H, W)
    blk = layer.transformer_blocks[0]
    h = torch.nn.functional.group_norm(x, 32, layer.norm.weight, layer.norm.bias, 1e-6)  # per frame
    h = h.permute(2, 3, 0, 1).reshape(H * W, F, C)  # (h w) f c
    h = h @ layer.proj_in.weight.T + layer.proj_in.bias
    for attn, norm in zip(blk.attention_blocks, blk.norms):
        n = torch.nn.functional.layer_norm(h, (C,), norm.weight, norm.bias) + tl.sinusoidal_encoding(24, C)[:, :F]
        q, k, v = (n @ w.T for w in (attn.to_q.weight, attn.to_k.weight, attn.to_v.weight))
        q, k, v = (t.reshape(H * W, F, heads, C // heads).transpose(1, 2) for t in (q, k, v))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // heads), dim=-1)
        o = (w @ v).transpose(1, 2).reshape(H * W, F, C)
        h = h + o @ attn.to_out[0].weight.T + attn.to_out[0].bias
    n = torch.nn.functional.layer_norm(h, (C,), blk.ff_norm.weight, blk.ff_norm.bias)
    a, gate = (n @ blk.ff.net[0].proj.weight.T + blk.ff.net[0].proj.bias).chunk(2, -1)
    h = h + (a * torch.nn.functional.gelu(gate)) @ blk.ff.net[2].weight.T + blk.ff.net[2].bias
    h = h @ layer.proj_out.weight.T + layer.proj_out.bias
    ref = x + h.reshape(H, W, F, C).permute(2, 3, 0, 1)
    assert (layer(x, F) - ref).abs().max().item() <= 1e-5


def test_positional_encoding_is_animatediffs_sinusoid():
    pe = tl.sinusoidal_encoding(24, 320)
    assert pe.shape == (1, 24, 320)
    assert pe[0, 0, 0] == 0 and pe[0, 0, 1] == 1
    assert torch.isclose(pe[0, 3, 2], torch.sin(torch.tensor(3.0) * math.exp(-2 * math.log(10000) / 320)))


def test_chunked_attention_equals_unchunked(monkeypatch):
    layer = randomize_(tl.TemporalAttention(64, heads=4, max_frames=16))
    x = torch.randn(8, 64, 4, 4)
    full = layer(x, 8)
    monkeypatch.setattr(tl, "MAX_ATTENTION_BATCH", 5)  # 16 sequences in chunks of 5
    assert torch.allclose(layer(x, 8), full, atol=1e-6)


def test_too_many_frames_and_ragged_batches_are_refused():
    layer = tl.TemporalAttention(64, max_frames=8)
    with pytest.raises(ValueError, match="9 frames exceed"):
        layer(torch.randn(9, 64, 2, 2), 9)
    with pytest.raises(ValueError, match="not a whole number"):
        tl.TemporalConv(64)(torch.randn(7, 64, 2, 2), 4)


def test_sd15_sites_count_resblocks_and_transformers():
    layout = sd15_layout()
    sites = atomovideo_sites(layout)
    res = sum(k == "res" for children in layout.values() for k, _ in children)
    tr = sum(k == "transformer" for children in layout.values() for k, _ in children)
    assert (res, tr) == (22, 16)  # SD1.5: 8+2+12 ResBlocks, 6+1+9 transformers
    assert sum(s.kind == CONV for s in sites) == res and sum(s.kind == ATTENTION for s in sites) == tr
    assert check_sites_fit(sites, layout) == []
    assert check_sites_fit(sites, sd15_layout(channel_mult=(1, 1), num_res_blocks=1))  # does not fit


def test_light_attention_adds_only_its_attention_output():
    """AtomoVideo's light layer: x + to_out(attention over frames of LN(GN(x)) + pe), no projections."""
    C, F, H, W, heads = 64, 4, 2, 2, 4
    layer = randomize_(tl.TemporalAttention(C, heads=heads, max_frames=8, projections=False))
    assert layer.proj_in is None and layer.proj_out is None
    assert not any(k.startswith(("proj_in", "proj_out")) for k in layer.state_dict())
    x = torch.randn(F, C, H, W)
    attn, norm = layer.transformer_blocks[0].attention_blocks[0], layer.transformer_blocks[0].norms[0]
    h = torch.nn.functional.group_norm(x, 32, layer.norm.weight, layer.norm.bias, 1e-6)
    h = h.permute(2, 3, 0, 1).reshape(H * W, F, C)
    n = torch.nn.functional.layer_norm(h, (C,), norm.weight, norm.bias) + tl.sinusoidal_encoding(8, C)[:, :F]
    q, k, v = (n @ w.T for w in (attn.to_q.weight, attn.to_k.weight, attn.to_v.weight))
    o = torch.nn.functional.scaled_dot_product_attention(
        *(t.reshape(H * W, F, heads, C // heads).transpose(1, 2) for t in (q, k, v)))
    o = o.transpose(1, 2).reshape(H * W, F, C) @ attn.to_out[0].weight.T + attn.to_out[0].bias
    ref = x + o.reshape(H, W, F, C).permute(2, 3, 0, 1)
    assert (layer(x, F) - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("kind", LAYERS)
def test_inference_path_equals_the_autograd_path(kind, monkeypatch):
    """Without autograd the layers add in place and run the transformer block over chunks of sequences
    (`INFERENCE_CHUNK_TOKENS`); the result is the autograd path's, for several videos and a ragged last chunk."""
    frames = 6
    layer = randomize_(LAYERS[kind](), seed=3)
    x = torch.randn(2 * frames, 64, 5, 3, generator=torch.Generator().manual_seed(4))
    with torch.enable_grad():
        ref = layer(x, frames)
    monkeypatch.setattr(tl, "INFERENCE_CHUNK_TOKENS", 4 * frames)  # 30 sequences in chunks of 4
    with torch.no_grad():
        out = layer(x, frames)
    assert (out - ref).abs().max().item() <= 1e-5
    assert (ref - x).abs().max().item() > 1e-2  # the layer does something
    x_before = x.clone()
    with torch.no_grad():
        layer(x, frames)
    assert torch.equal(x, x_before)  # in-place work never touches the input


def test_short_sequence_attention_is_the_reference_attention(monkeypatch):
    reference_attention = core("decoupled_attention", "reference_attention")
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(13, 16, 64, generator=g) for _ in range(3))
    ref = reference_attention(q, k, v, 8)
    assert (tl.short_sequence_attention(q, k, v, 8) - ref).abs().max() <= 1e-5
    monkeypatch.setattr(tl, "MAX_ATTENTION_BATCH", 5)
    assert (tl.short_sequence_attention(q, k, v, 8) - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_group_norm_across_frames_is_group_norm_of_the_video_tensor(dtype, tol):
    """The layout-preserving across-frames GroupNorm equals group_norm on `b c f h w` (AnimateDiff v1's norm)."""
    group_norm_across_frames = core("frame_groupnorm", "group_norm_across_frames")
    b, f, c, h, w = 2, 5, 64, 3, 4
    g = torch.Generator().manual_seed(8)
    x = (torch.randn(b * f, c, h, w, generator=g) * 3 + torch.randn(b * f, 1, 1, 1, generator=g)).to(dtype)
    weight, bias = torch.randn(c, generator=g).to(dtype), torch.randn(c, generator=g).to(dtype)
    video = x.reshape(b, f, c, h, w).transpose(1, 2)
    ref = torch.nn.functional.group_norm(video, 32, weight, bias, 1e-6).transpose(1, 2).reshape(x.shape)
    out = group_norm_across_frames(x, f, 32, weight, bias, 1e-6)
    assert out.dtype == dtype and (out - ref).abs().max().item() <= tol
    per_frame = torch.nn.functional.group_norm(x, 32, weight, bias, 1e-6)
    assert (out - per_frame).abs().max().item() > 1e-2  # the frames' statistics differ


@pytest.mark.parametrize("kind", LAYERS)
def test_layer_norm_across_frames_option(kind):
    """`norm_across_frames` swaps only the layer's own GroupNorm for the across-frames one."""
    group_norm_across_frames = core("frame_groupnorm", "group_norm_across_frames")
    frames = 4
    layer = randomize_(LAYERS[kind](), seed=9)
    x = torch.randn(2 * frames, 64, 3, 3, generator=torch.Generator().manual_seed(10)) * 2
    norm = layer.norm
    assert torch.allclose(layer.normalize(x, frames, True), group_norm_across_frames(
        x, frames, norm.num_groups, norm.weight, norm.bias, norm.eps), atol=1e-6)
    with torch.no_grad():
        across, per_frame = layer(x, frames, norm_across_frames=True), layer(x, frames)
    assert (across - per_frame).abs().max().item() > 1e-3
    with torch.enable_grad():
        assert (layer(x, frames, norm_across_frames=True) - across).abs().max().item() <= 1e-5
