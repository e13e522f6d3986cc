"""Host-free: IP-Adapter projections, file detection and validation, and the decoupled-attention maths."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from pack import core

ipj = core("image_projection")
ImageKeyValues, decoupled_attention, is_active, reference_attention, tokens_for_batch = core(
    "decoupled_attention", "ImageKeyValues", "decoupled_attention", "is_active", "reference_attention", "tokens_for_batch")
AtomoVideoError = core("errors", "AtomoVideoError")

# Inner widths of the 16 SD1.5 attn2 sites in IP-Adapter order n = 1, 3, ..., 31 (down, up, mid).
SD15_WIDTHS = [320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320, 1280]


def _ip_layers(widths, cross=768, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, c in enumerate(widths):
        n = 2 * i + 1
        out[f"ip_adapter.{n}.to_k_ip.weight"] = torch.randn(c, cross, generator=g) * 0.02
        out[f"ip_adapter.{n}.to_v_ip.weight"] = torch.randn(c, cross, generator=g) * 0.02
    return out


def base_state_dict(widths=SD15_WIDTHS, clip_dim=1024, cross=768, tokens=4, seed=0) -> dict:
    """The exact key set and shapes of ip-adapter_sd15.safetensors (for the default arguments)."""
    g = torch.Generator().manual_seed(seed)
    sd = {"image_proj.proj.weight": torch.randn(tokens * cross, clip_dim, generator=g) * 0.02,
          "image_proj.proj.bias": torch.zeros(tokens * cross),
          "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    sd.update(_ip_layers(widths, cross, seed))
    return sd


def plus_state_dict(widths=SD15_WIDTHS, clip_dim=1280, dim=768, depth=4, heads=12, queries=16, seed=0) -> dict:
    """The exact key set and shapes of ip-adapter-plus_sd15.safetensors (for the default arguments)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    inner = 64 * heads
    sd = {"image_proj.latents": r(1, queries, dim), "image_proj.proj_in.weight": r(dim, clip_dim),
          "image_proj.proj_in.bias": torch.zeros(dim), "image_proj.proj_out.weight": r(768, dim),
          "image_proj.proj_out.bias": torch.zeros(768), "image_proj.norm_out.weight": torch.ones(768),
          "image_proj.norm_out.bias": torch.zeros(768)}
    for i in range(depth):
        p = f"image_proj.layers.{i}."
        sd.update({p + "0.norm1.weight": torch.ones(dim), p + "0.norm1.bias": torch.zeros(dim),
                   p + "0.norm2.weight": torch.ones(dim), p + "0.norm2.bias": torch.zeros(dim),
                   p + "0.to_q.weight": r(inner, dim), p + "0.to_kv.weight": r(2 * inner, dim),
                   p + "0.to_out.weight": r(dim, inner),
                   p + "1.0.weight": torch.ones(dim), p + "1.0.bias": torch.zeros(dim),
                   p + "1.1.weight": r(4 * dim, dim), p + "1.3.weight": r(dim, 4 * dim)})
    sd.update(_ip_layers(widths, 768, seed))
    return sd


def nested(flat: dict) -> dict:
    """The `.bin` layout: {"image_proj": {...}, "ip_adapter": {...}}."""
    out = {"image_proj": {}, "ip_adapter": {}}
    for k, v in flat.items():
        group, _, rest = k.partition(".")
        out[group][rest] = v
    return out


# -- public key sets ---------------------------------------------------------------------------------------------
def test_base_full_layout_loads_with_no_missing_or_unexpected_keys():
    sd = base_state_dict()
    assert len(sd) == 4 + 32
    proj, ip = ipj.split_prefixed(sd)
    w = ipj.load_ipadapter(proj, ip)
    assert (w.kind, w.tokens, w.clip_width, w.clip_input, len(w.layers)) == ("base", 4, 1024, "image_embeds", 16)
    # strict: the module's state dict is exactly the file's projection
    assert set(w.projection.state_dict()) == set(proj)
    assert [tuple(k.shape) for k, _ in w.layers] == [(c, 768) for c in SD15_WIDTHS]
    out = w.projection(torch.randn(2, 1024))
    assert out.shape == (2, 4, 768)


def test_plus_full_layout_loads_with_no_missing_or_unexpected_keys():
    sd = plus_state_dict()
    proj, ip = ipj.split_prefixed(sd)
    assert len(proj) == 7 + 4 * 11
    w = ipj.load_ipadapter(proj, ip)
    assert (w.kind, w.tokens, w.clip_width, w.clip_input) == ("plus", 16, 1280, "penultimate_hidden_states")
    assert set(w.projection.state_dict()) == set(proj)
    missing, unexpected = w.projection.load_state_dict(proj, strict=True)
    assert not missing and not unexpected
    out = w.projection(torch.randn(1, 257, 1280))
    assert out.shape == (1, 16, 768) and torch.isfinite(out).all()


def test_resampler_matches_a_direct_computation():
    torch.manual_seed(0)
    m = ipj.Resampler(dim=32, depth=1, dim_head=8, heads=4, queries=3, clip_dim=24, output_dim=16, ff_mult=2)
    x = torch.randn(2, 5, 24)
    attn, ff = m.layers[0]
    h = m.proj_in(x)
    lat = m.latents.repeat(2, 1, 1)
    xn, ln = attn.norm1(h), attn.norm2(lat)
    q = attn.to_q(ln)
    kv = attn.to_kv(torch.cat([xn, ln], 1))
    k, v = kv[..., :32], kv[..., 32:]
    ref_attn = attn.to_out(reference_attention(q, k, v, 4))
    lat = lat + ref_attn
    lat = lat + ff(lat)
    ref = m.norm_out(m.proj_out(lat))
    assert (m(x) - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("maker", [base_state_dict, plus_state_dict])
@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_files_load_from_safetensors_and_bin(tmp_path, maker, suffix):
    sd = maker()
    path = tmp_path / f"ip{suffix}"
    if suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save(nested(sd), str(path))
    w = ipj.load_ipadapter_file(path)
    assert len(w.layers) == 16 and set(w.projection.state_dict()) == {k[len("image_proj."):] for k in sd
                                                                     if k.startswith("image_proj.")}


def test_bin_that_needs_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("no",))

    path = tmp_path / "evil.bin"
    torch.save({"image_proj": {"x": Evil()}}, str(path))
    with pytest.raises(AtomoVideoError, match="loading it could run code") as e:
        ipj.load_ipadapter_file(path)
    assert "weights_only" not in str(e.value) and "convert a file you trust to .safetensors" in str(e.value)


# -- other families ------------------------------------------------------------------------------------------------
def test_sdxl_file_is_refused():
    sd = base_state_dict(widths=[640] * 4, clip_dim=1280, cross=2048)
    with pytest.raises(AtomoVideoError, match="SDXL"):
        ipj.load_ipadapter(*ipj.split_prefixed(sd))


def test_faceid_file_is_refused():
    sd = base_state_dict()
    sd["ip_adapter.0.to_q_lora.down.weight"] = torch.zeros(128, 320)
    with pytest.raises(AtomoVideoError, match="FaceID"):
        ipj.load_ipadapter(*ipj.split_prefixed(sd))


def test_unknown_projection_and_non_ipadapter_files_are_refused():
    sd = base_state_dict()
    sd = {k.replace("image_proj.norm", "image_proj.other"): v for k, v in sd.items()}
    with pytest.raises(AtomoVideoError, match="unknown image projection"):
        ipj.load_ipadapter(*ipj.split_prefixed(sd))
    with pytest.raises(AtomoVideoError, match="not an IP-Adapter file"):
        ipj.split_prefixed({"model.diffusion_model.x": torch.zeros(1)})


def test_missing_projection_tensor_and_gap_in_layers_are_refused():
    sd = plus_state_dict()
    del sd["image_proj.layers.2.0.to_kv.weight"]
    with pytest.raises(AtomoVideoError, match="missing keys"):
        ipj.load_ipadapter(*ipj.split_prefixed(sd))
    sd = base_state_dict()
    del sd["ip_adapter.5.to_k_ip.weight"], sd["ip_adapter.5.to_v_ip.weight"]
    with pytest.raises(AtomoVideoError, match="odd"):
        ipj.load_ipadapter(*ipj.split_prefixed(sd))


def test_site_and_clip_width_checks():
    w = ipj.load_ipadapter(*ipj.split_prefixed(base_state_dict()))
    ipj.check_sites(w, [(c, 768) for c in SD15_WIDTHS], [str(i) for i in range(16)])
    with pytest.raises(AtomoVideoError, match="16 attention layers but the model has 7"):
        ipj.check_sites(w, [(320, 768)] * 7, [str(i) for i in range(7)])
    with pytest.raises(AtomoVideoError, match="layer 1 is"):
        ipj.check_sites(w, [(640, 768)] + [(c, 768) for c in SD15_WIDTHS[1:]], [str(i) for i in range(16)])
    ipj.check_clip_width(w, 1024)
    with pytest.raises(AtomoVideoError, match="wrong width.*width 32.*1024"):
        ipj.check_clip_width(w, 32)


def test_atomovideo_image_proj_split():
    sd = base_state_dict(widths=[320, 320])
    inner = {k[len("image_proj."):]: v for k, v in sd.items() if k.startswith("image_proj.")}
    inner.update({k: v for k, v in sd.items() if k.startswith("ip_adapter.")})
    w = ipj.load_ipadapter(*ipj.split_atomovideo_image_proj(inner))
    assert w.kind == "base" and len(w.layers) == 2
    with pytest.raises(AtomoVideoError, match="incomplete image projection"):
        ipj.split_atomovideo_image_proj({"proj.weight": torch.zeros(3072, 1024)})


# -- decoupled attention ------------------------------------------------------------------------------------------
def _direct(q, k, v, kip, vip, heads, weight):
    """softmax attention written per head with explicit loops."""
    b, l, inner = q.shape
    d = inner // heads
    out = torch.zeros(b, l, inner, dtype=torch.float64)
    for bi in range(b):
        for h in range(heads):
            s = slice(h * d, (h + 1) * d)
            for kk, vv, scale in ((k, v, 1.0), (kip, vip, weight)):
                logits = q[bi, :, s].double() @ kk[bi, :, s].double().T / d ** 0.5
                out[bi, :, s] += scale * torch.softmax(logits, -1) @ vv[bi, :, s].double()
    return out


def test_decoupled_attention_matches_a_direct_reference_computation():
    g = torch.Generator().manual_seed(0)
    b, lq, lt, li, heads, dh = 4, 6, 5, 3, 2, 8
    q, k, v = (torch.randn(b, n, heads * dh, generator=g) for n in (lq, lt, lt))
    kip, vip = torch.randn(b, li, heads * dh, generator=g), torch.randn(b, li, heads * dh, generator=g)
    out = decoupled_attention(q, (k, v), (kip, vip), heads, 0.7)
    diff = (out.double() - _direct(q, k, v, kip, vip, heads, 0.7)).abs().max().item()
    print(f"decoupled attention vs direct reference: max |difference| = {diff:.3e}")
    assert diff <= 1e-5
    assert torch.equal(decoupled_attention(q, (k, v), (kip, vip), heads, 0.0), reference_attention(q, k, v, heads))


def test_tokens_follow_cond_or_uncond_in_any_order():
    cond, uncond = torch.ones(2, 3), -torch.ones(2, 3)
    t = tokens_for_batch(cond, uncond, [1, 0], 6)
    assert t.shape == (6, 2, 3)
    assert (t[:3] == -1).all() and (t[3:] == 1).all()
    t = tokens_for_batch(cond, uncond, [0, 1], 6)
    assert (t[:3] == 1).all() and (t[3:] == -1).all()
    with pytest.raises(RuntimeError):
        tokens_for_batch(cond, uncond, [0, 1], 5)


def test_image_key_values_per_site():
    layers = [(torch.randn(8, 4), torch.randn(8, 4)), (torch.randn(16, 4), torch.randn(16, 4))]
    kv = ImageKeyValues(layers, torch.randn(3, 4), torch.zeros(3, 4))
    k, v = kv.keys_values(1, [0, 1], 4)
    assert k.shape == (4, 3, 16)
    assert torch.allclose(k[0], kv.cond_tokens @ layers[1][0].T, atol=1e-6) and (k[2:] == 0).all()


def test_is_active_window():
    assert is_active(5.0, 10.0, 1.0) and is_active(10.0, 10.0, 1.0) and is_active(1.0, 10.0, 1.0)
    assert not is_active(11.0, 10.0, 1.0) and not is_active(0.5, 10.0, 1.0)


def test_full_face_layout_loads():
    g = torch.Generator().manual_seed(1)
    sd = {"image_proj.proj.0.weight": torch.randn(1280, 1280, generator=g) * 0.02,
          "image_proj.proj.0.bias": torch.zeros(1280),
          "image_proj.proj.2.weight": torch.randn(768, 1280, generator=g) * 0.02,
          "image_proj.proj.2.bias": torch.zeros(768),
          "image_proj.proj.3.weight": torch.ones(768), "image_proj.proj.3.bias": torch.zeros(768)}
    sd.update(_ip_layers(SD15_WIDTHS))
    w = ipj.load_ipadapter(*ipj.split_prefixed(sd))
    assert (w.kind, w.tokens, w.clip_width, w.clip_input) == ("full", 257, 1280, "penultimate_hidden_states")
    assert w.projection(torch.randn(1, 257, 1280)).shape == (1, 257, 768)


def test_shared_token_attention_equals_attention_over_tokens_repeated_per_frame():
    """The patch's image attention (one sequence per cond/uncond chunk, keys projected once) is the reference
    attention of every frame over its chunk's tokens, whatever the chunk order."""
    shared_token_attention = core("decoupled_attention", "shared_token_attention")
    g = torch.Generator().manual_seed(12)
    layers = [(torch.randn(64, 32, generator=g) / 32 ** 0.5, torch.randn(64, 32, generator=g) / 32 ** 0.5)]
    kv = ImageKeyValues(layers, torch.randn(4, 32, generator=g), torch.randn(4, 32, generator=g))
    q = torch.randn(6, 10, 64, generator=g)
    for order in ([0, 1], [1, 0], [0]):
        k, v = kv.keys_values(0, order, 6)
        ref = reference_attention(q, k, v, 8)
        out = shared_token_attention(q, kv.token_kv(0, order), 8)
        assert (out - ref).abs().max().item() <= 1e-5, order
    assert kv.projected(0) is kv.projected(0)  # projected once
    kv.to(torch.float64)
    assert kv.projected(0)[0][0].dtype == torch.float64  # and again after a cast
