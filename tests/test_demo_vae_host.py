"""The demo VAE's files load through ComfyUI's real VAELoader and reconstruct a world frame there as they do here."""
from __future__ import annotations

import pytest
import torch

from pack import module

train_vae, world = module("atomo_demo", "train_vae", "world")
SD15_VAE_SCALE, TinyAutoencoder, load_taesd_files = module("atomo_demo.taesd_layout", "SD15_VAE_SCALE", "TinyAutoencoder",
                                                           "load_taesd_files")

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A demo VAE trained briefly on one clip (the layout and conventions are what is tested, not quality)."""
    out = tmp_path_factory.mktemp("demo_vae")
    result = train_vae.train(train_vae.Config(out=str(out), steps=40, batch=4, crop=32, clips=1, frame_stride=8,
                                              eval_clips=1, eval_frames=2, save_every=40, log_every=20, lr=1e-3,
                                              warmup=4, threads=1, seed=3))
    return out / "weights", result


def _world_frames():
    """The frames that run was trained on, as a ComfyUI IMAGE: [B,H,W,3] in [0,1]."""
    clip, _ = world.make_clip(world.split_seeds("train", 1)[0], frames=32, size=64)
    return torch.from_numpy(clip[::8].copy()).float() / 255.0


def test_vaeloader_loads_and_reconstructs(comfy, trained):
    weights, result = trained
    approx = comfy.models_dir / "vae_approx"
    for name in ("taesd_encoder.safetensors", "taesd_decoder.safetensors"):
        (approx / name).write_bytes((weights / name).read_bytes())
    (comfy.models_dir / "vae" / "atomo_demo_vae.safetensors").write_bytes(
        (weights / "atomo_demo_vae.safetensors").read_bytes())
    names = comfy.node_class("VAELoader").vae_list()
    assert "taesd" in names and "atomo_demo_vae.safetensors" in comfy.folder_paths.get_filename_list("vae")

    image = _world_frames()
    ours = load_taesd_files(weights / "taesd_encoder.safetensors", weights / "taesd_decoder.safetensors")
    with torch.no_grad():
        z_ref, rec_ref = ours(image.permute(0, 3, 1, 2))
    rec_ref = rec_ref.clamp(0, 1).permute(0, 2, 3, 1)
    torch.manual_seed(3)
    with torch.no_grad():
        untrained = TinyAutoencoder().init_for_training()(image.permute(0, 3, 1, 2))[1]
    chw = image.permute(0, 3, 1, 2)
    gain = train_vae.psnr(rec_ref.permute(0, 3, 1, 2), chw).mean() - train_vae.psnr(untrained, chw).mean()
    assert gain > 1.5, gain  # it reconstructs the frame better than its starting point

    for vae_name in ("taesd", "atomo_demo_vae.safetensors"):
        vae = comfy.call("VAELoader", vae_name=vae_name)[0]
        latent = comfy.call("VAEEncode", pixels=image, vae=vae)[0]["samples"]
        assert latent.shape == (4, 4, 8, 8)
        # ComfyUI's LATENT is the encoder output divided by the SD1.5 scale, channel for channel
        torch.testing.assert_close(latent.float() * SD15_VAE_SCALE, z_ref, atol=2e-3, rtol=2e-3)
        decoded = comfy.call("VAEDecode", samples={"samples": latent}, vae=vae)[0]
        assert decoded.shape == image.shape
        assert (decoded.float() - rec_ref).abs().max() < 3e-3, vae_name
