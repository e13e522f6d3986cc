"""AtomoVideoImageConditioning in the real ComfyUI: latents that decode back, exact masks, the 9 channels that
reach the inflated conv_in, chunked encoding and refusals."""
from __future__ import annotations

import math

import pytest
import torch

import fixture_models

NODE = "AtomoVideoImageConditioning"
FRAMES = 16


def test_image(seed: int, size: int = 256) -> torch.Tensor:
    """A smooth synthetic picture [1, size, size, 3]: low-frequency colour waves and a soft disk."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    channels = []
    for c in range(3):
        fx, fy, ph = (torch.rand(3, generator=g) * torch.tensor([3.0, 3.0, 6.28])).tolist()
        channels.append(0.5 + 0.3 * torch.sin(2 * math.pi * (fx * x + fy * y) + ph))
    img = torch.stack(channels, -1)
    cx, cy = (0.3 + 0.4 * torch.rand(2, generator=g)).tolist()
    disk = torch.sigmoid((0.2 - ((x - cx) ** 2 + (y - cy) ** 2).sqrt()) * 40)[..., None]
    colour = torch.rand(3, generator=g)
    return (img * (1 - disk) + colour * disk).clamp(0, 1)[None]


test_image.__test__ = False  # a helper, not a test


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) ** 2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def cat_vae(comfy, tiny_models, atomo_weights):
    """(model, positive, negative, vae): the shared `base` prompt plus the checkpoint's VAE."""
    model, clip, vae = comfy.load_checkpoint(tiny_models["checkpoint"])
    return model, comfy.encode(clip, "a cat walking"), comfy.encode(clip, ""), vae


def conditioning(comfy, pos, neg, vae, image, indices="0", frames=FRAMES, size=64, **kw):
    return comfy.call(NODE, positive=pos, negative=neg, vae=vae, image=image, frames=frames, width=size,
                      height=size, frame_indices=indices, **kw)


def model_conds(cond):
    mc = cond[0][1]["model_conds"]
    return mc["atomo_image"].cond, mc["atomo_mask"].cond


@pytest.mark.parametrize("given", [[0], [0, 1, 2, 3], [0, 8, 15]], ids=["first", "first4", "keyframes"])
def test_given_frames_decode_back_to_the_input_and_the_rest_is_zero(comfy, cat_vae, taesd_paths, given):
    _, pos, neg, vae = cat_vae
    images = torch.cat([test_image(seed=10 + i) for i in range(len(given))])
    text = ",".join(map(str, given))
    out_pos, out_neg, latent = conditioning(comfy, pos, neg, vae, images, text, size=256)
    image_latent, mask = model_conds(out_pos)
    assert image_latent.shape == (FRAMES, 4, 32, 32) and mask.shape == (FRAMES, 1, 32, 32)
    assert latent["samples"].shape == (FRAMES, 4, 32, 32) and (latent["samples"] == 0).all()
    # negative carries the same image condition
    neg_latent, neg_mask = model_conds(out_neg)
    assert torch.equal(neg_latent, image_latent) and torch.equal(neg_mask, mask)
    # the mask is exact
    expected = torch.zeros(FRAMES)
    expected[given] = 1.0
    assert torch.equal(mask, expected.view(FRAMES, 1, 1, 1).expand(FRAMES, 1, 32, 32))
    # non-given frames are exactly zero
    others = [i for i in range(FRAMES) if i not in given]
    assert (image_latent[others] == 0).all()
    # the raw latent decodes back to the input (real TAESD, 256 px)
    decoded = vae.decode(image_latent[given])
    values = [psnr(decoded[j], images[j]) for j in range(len(given))]
    print(f"PSNR for given frames {given}: " + ", ".join(f"{v:.2f} dB" for v in values))
    assert min(values) >= 20.0, values


def test_the_nine_channels_reach_the_inflated_conv_in_in_the_declared_order(comfy, cat_vae, atomo_weights):
    import comfy.patcher_extension as pe

    model, pos, neg, vae = cat_vae
    m = comfy.call("AtomoVideoLoader", model=model, weights=atomo_weights["random"])[0]
    meta = m.get_attachment("atomovideo").metadata
    assert tuple(meta.channel_layout) == ("noise:4", "mask:1", "image:4") and meta.mask_polarity == "1=given"
    frames = 4
    # different images for positive and negative so the cond and uncond halves can be told apart
    p_img = torch.cat([test_image(1, 64), test_image(2, 64)])
    n_img = torch.cat([test_image(3, 64), test_image(4, 64)])
    cpos, _, lat = conditioning(comfy, pos, neg, vae, p_img, "0,3", frames=frames)
    _, cneg, _ = conditioning(comfy, pos, neg, vae, n_img, "1,2", frames=frames)
    p_latent, p_mask = model_conds(cpos)
    n_latent, n_mask = model_conds(cneg)

    captured, orders = [], []
    m = m.clone()
    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "test_capture",
                           lambda executor, *a, **kw: (orders.append(list(_options(a, kw)["cond_or_uncond"])),
                                                       executor(*a, **kw))[1])
    conv_in = m.model.diffusion_model.input_blocks[0][0]
    handle = conv_in.register_forward_pre_hook(lambda mod, args: captured.append(args[0].detach().clone()))
    try:
        g = torch.Generator().manual_seed(0)
        start = {"samples": torch.randn(frames, 4, 8, 8, generator=g)}
        comfy.ksample(m, cpos, cneg, start, steps=1, cfg=3.0, disable_noise=True, denoise=0.5)
    finally:
        handle.remove()
    assert captured and orders
    x, order = captured[0], orders[0]
    assert x.shape == (len(order) * frames, 9, 8, 8) and sorted(order) == [0, 1]
    scale = model.get_model_object("latent_format").scale_factor
    for chunk, which in enumerate(order):
        part = x[chunk * frames:(chunk + 1) * frames]
        want_latent, want_mask = (p_latent, p_mask) if which == 0 else (n_latent, n_mask)
        assert torch.equal(part[:, 4:5], want_mask.to(part.dtype)), f"mask channel of {'uncond' if which else 'cond'}"
        assert torch.allclose(part[:, 5:9], want_latent.to(part.dtype) * scale, atol=1e-5)
        # channels 0-3: the noisy latent as the model sees it (x / sqrt(sigma^2 + 1))
        assert torch.allclose(part[:, :4] / part[:, :4].norm(), start["samples"] / start["samples"].norm(), atol=1e-5)


def _options(args, kwargs):
    """transformer_options of a DIFFUSION_MODEL wrapper call (x, timesteps, context, y, control, options)."""
    return kwargs["transformer_options"] if "transformer_options" in kwargs else args[5]


def test_other_model_conds_are_kept(comfy, cat_vae):
    import comfy.conds as conds

    _, pos, neg, vae = cat_vae
    tagged = [[pos[0][0], {**pos[0][1], "model_conds": {"num_video_frames": conds.CONDConstant(4)}}]]
    out = conditioning(comfy, tagged, neg, vae, test_image(0, 64), frames=4)[0]
    assert set(out[0][1]["model_conds"]) == {"num_video_frames", "atomo_image", "atomo_mask"}
    assert "model_conds" not in pos[0][1]  # the input conditioning is not changed


def test_encoding_runs_in_chunks_and_gives_the_same_latents(comfy, cat_vae):
    _, pos, neg, vae = cat_vae
    seen = []

    class CountingVAE:
        def encode(self, pixels):
            seen.append(pixels.shape[0])
            return vae.encode(pixels)

    images = torch.cat([test_image(i, 64) for i in range(5)])
    chunked = model_conds(conditioning(comfy, pos, neg, CountingVAE(), images, "0-4", frames=8, encode_batch=2)[0])[0]
    assert seen == [2, 2, 1]
    whole = model_conds(conditioning(comfy, pos, neg, vae, images, "0-4", frames=8, encode_batch=8)[0])[0]
    assert torch.allclose(chunked, whole, atol=1e-5)


def test_rgba_and_other_sizes_are_accepted(comfy, cat_vae):
    _, pos, neg, vae = cat_vae
    rgb = test_image(5, 64)
    rgba = torch.cat([rgb, torch.full_like(rgb[..., :1], 0.5)], -1)
    a = model_conds(conditioning(comfy, pos, neg, vae, rgba, frames=2)[0])[0]
    b = model_conds(conditioning(comfy, pos, neg, vae, rgb, frames=2)[0])[0]
    assert torch.equal(a, b)
    wide = torch.rand(1, 40, 96, 3)
    for mode in ("crop", "pad", "stretch"):
        lat = model_conds(conditioning(comfy, pos, neg, vae, wide, frames=2, size=64, resize_mode=mode)[0])[0]
        assert lat.shape == (2, 4, 8, 8)


@pytest.mark.parametrize("inputs,name,message", [
    ({"width": 100}, "width", r"100 is not a multiple of 8.*96 or 104"),
    ({"height": 60}, "height", r"60 is not a multiple of 8.*56 or 64"),
    ({"frame_indices": "0,1"}, "image", r"1 image\(s\) for 2 given frame\(s\)"),
    ({"frame_indices": "16"}, "frame_indices", "outside the video of 16 frames"),
    ({"frame_indices": "x"}, "frame_indices", "not a frame index"),
    ({"image": torch.rand(1, 64, 64, 2)}, "image", "2 channels"),
    ({"image": torch.rand(3, 64, 64, 3)}, "image", r"3 image\(s\) for 1 given frame"),
    ({"frames": 0}, "frames", "use 1 to"),
    ({"resize_mode": "zoom"}, "resize_mode", "unknown mode"),
])
def test_bad_inputs_name_the_node_and_the_input(comfy, cat_vae, inputs, name, message):
    _, pos, neg, vae = cat_vae
    args = dict(positive=pos, negative=neg, vae=vae, image=test_image(0, 64), frames=FRAMES, width=64, height=64,
                frame_indices="0")
    args.update(inputs)
    with pytest.raises(ValueError, match=rf"AtomoVideoImageConditioning, input '{name}': .*{message}"):
        comfy.call(NODE, **args)


def test_a_vae_with_other_latents_is_refused(comfy, cat_vae):
    _, pos, neg, vae = cat_vae

    class SixteenChannelVAE:
        def encode(self, pixels):
            return torch.zeros(pixels.shape[0], 16, pixels.shape[1] // 8, pixels.shape[2] // 8)

    with pytest.raises(ValueError, match=r"AtomoVideoImageConditioning, input 'vae': .*16, 8, 8.*SD1\.5 VAE"):
        conditioning(comfy, pos, neg, SixteenChannelVAE(), test_image(0, 64), frames=2)


def test_conditioning_node_through_a_prompt(comfy, tiny_models, atomo_weights):
    from safetensors.torch import load_file

    prompt = {
        **fixture_models.loader_prompt(tiny_models, atomo_weights["random"]),
        "4": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0x336699}},
        "5": {"class_type": NODE, "inputs": {"positive": ["3", 0], "negative": ["3", 0], "vae": ["1", 2],
                                             "image": ["4", 0], "frames": 4, "width": 64, "height": 64,
                                             "frame_indices": "0,3", "resize_mode": "crop", "encode_batch": 8}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "positive": ["5", 0], "negative": ["5", 1],
                                                   "latent_image": ["5", 2], "seed": 1, "steps": 2, "cfg": 2.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "atomo_imgcond_test"}},
    }
    comfy.run(prompt)
    files = sorted(comfy.output_dir.rglob("atomo_imgcond_test*.latent"))
    assert files
    saved = load_file(str(files[-1]))["latent_tensor"]
    assert saved.shape == (4, 4, 8, 8) and torch.isfinite(saved).all()
