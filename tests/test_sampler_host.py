"""AtomoVideoSampler / AtomoVideoModelSampling in the real host, proven with an exact denoiser.

The exact denoiser replaces the UNet (a keyed DIFFUSION_MODEL wrapper on a clone): for data x0 ~ N(MU, S^2) per
element it returns the ideal v-prediction E[v | x_t, t], computed from what the UNet itself receives (the scaled
input x_t and the integer timestep t) and the *reference* training schedule (diffusers' zero-SNR alphas_cumprod).
So a wrong sign, schedule, spacing, input scaling or parameterisation in the pack moves the samples away from
N(MU, S^2); the negative controls below show that such mistakes do fail the same check.
"""
from __future__ import annotations


import pytest
import torch

from pack import core

ns = core("noise_schedules")

diffusers = pytest.importorskip("diffusers", reason="diffusers is a test-only reference (requirements-test.txt)")

MU, S = 1.5, 0.5          # model-space latent statistics; S != 1 on purpose
SHAPE = (4, 4, 32, 32)    # 4 frames, 16384 elements
MEAN_TOL, STD_TOL = 0.05, 0.05
WRAPPER_KEY = "atomovideo_test_exact_denoiser"


def reference_scheduler():
    return diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                   beta_schedule="scaled_linear", rescale_betas_zero_snr=True,
                                   timestep_spacing="trailing", prediction_type="v_prediction",
                                   clip_sample=False, set_alpha_to_one=True)


REF_AC = reference_scheduler().alphas_cumprod.double()


def exact_v_wrapper(mu_cond=MU, mu_uncond=MU, s=S, sign=1.0):
    """DIFFUSION_MODEL wrapper returning the ideal v instead of running the UNet."""

    def wrapper(executor, x, timesteps, context=None, y=None, control=None, transformer_options={}, **kw):
        t = timesteps.round().long().clamp(0, len(REF_AC) - 1)
        ab = REF_AC[t.cpu()].to(x.device)
        mu = torch.full((x.shape[0], 1, 1, 1), float(mu_cond), dtype=torch.float64, device=x.device)
        coru = transformer_options.get("cond_or_uncond", [0])
        n = x.shape[0] // len(coru)
        for i, c in enumerate(coru):
            if c == 1:
                mu[i * n:(i + 1) * n] = mu_uncond
        return (sign * ns.gaussian_ideal_v(x.double(), ab, mu, s)).to(x.dtype)

    return wrapper


def with_exact(model, **kw):
    m = model.clone()
    from comfy.patcher_extension import WrappersMP

    m.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, exact_v_wrapper(**kw))
    return m


@pytest.fixture(scope="module")
def fox(comfy, tiny_models):
    """The tiny checkpoint with this module's prompt, as a dict (not the shared `base` tuple)."""
    model, clip, vae = comfy.load_checkpoint(tiny_models["checkpoint"])
    return {"model": model, "pos": comfy.encode(clip, "a red fox running"), "neg": comfy.encode(clip, "")}


@pytest.fixture(scope="module")
def zsnr_model(comfy, fox):
    return comfy.call("AtomoVideoModelSampling", model=fox["model"], cfg_rescale=0.7)[0]


@pytest.fixture(scope="module")
def sn(comfy):
    return comfy.pack_module("atomo_host.sigmas")


def run_sampler(comfy, fox, model, *, sampler="ddim", scheduler="trailing", steps=25, seed=1, cfg=1.0,
                cfg_rescale=0.7, shape=SHAPE, latent=None, denoise=1.0):
    latent = latent if latent is not None else {"samples": torch.zeros(shape)}
    out = comfy.call("AtomoVideoSampler", model=model, positive=fox["pos"], negative=fox["neg"], latent=latent,
                     seed=seed, steps=steps, cfg=cfg, cfg_rescale=cfg_rescale, sampler_name=sampler,
                     scheduler=scheduler, denoise=denoise)[0]
    return out["samples"]


def model_space(model, samples):
    """The LATENT output is in VAE units; the denoiser's data distribution lives in model units (x 0.18215)."""
    return model.model.process_latent_in(samples)


def stats_errors(model, samples):
    x = model_space(model, samples)
    return (x.mean().item() - MU) / S, x.std().item() / S - 1.0


# -- schedule in the host --------------------------------------------------------------------------------------

def test_model_sampling_node_sets_reference_schedule(fox, zsnr_model):
    from comfy import model_sampling as cms

    ms = zsnr_model.get_model_object("model_sampling")
    assert isinstance(ms, cms.V_PREDICTION) and ms.zsnr
    ac_host = (1.0 / (1.0 + ms.sigmas.double() ** 2))
    assert (ac_host[:-1] - REF_AC[:-1]).abs().max().item() < 1e-6
    assert (ac_host[:-1] - ns.zero_snr_alphas_cumprod()[:-1]).abs().max().item() < 1e-6
    # The one deliberate difference: ComfyUI clamps alpha_bar_T = 0 to 4.9e-8 (sigma_max 4518.8).
    assert abs(ms.sigmas[-1].item() - 4518.76) < 0.1
    # A clone: the input model keeps SD1.5's eps sampling.
    orig = fox["model"].get_model_object("model_sampling")
    assert not isinstance(orig, cms.V_PREDICTION) and abs(orig.sigmas[-1].item() - 14.6146) < 1e-3


@pytest.mark.parametrize("steps", [1, 3, 7, 25, 50, 200])
def test_trailing_scheduler_is_diffusers_trailing(comfy, zsnr_model, steps):
    glue = comfy.pack_module("atomo_host.sigmas")
    ms = zsnr_model.get_model_object("model_sampling")
    sig = glue.schedule_sigmas(ms, "ddim", "trailing", steps, 1.0)
    ref = reference_scheduler()
    ref.set_timesteps(steps)
    assert torch.equal(sig[:-1], ms.sigmas[ref.timesteps.long()].float()) and sig[-1].item() == 0.0
    if 1000 % steps == 0:  # ComfyUI's "simple" is the same spacing when steps divides 1000
        assert torch.allclose(sig, glue.schedule_sigmas(ms, "ddim", "simple", steps, 1.0))


def test_default_sampler_is_ddim_step_for_step(comfy, fox, zsnr_model):
    """ddim + trailing from the node equals diffusers' DDIMScheduler loop driven by the same ideal v model."""
    steps, seed = 25, 7
    m = with_exact(zsnr_model)
    ours = model_space(m, run_sampler(comfy, fox, m, steps=steps, seed=seed, cfg=1.0, shape=(2, 4, 16, 16)))
    from comfy.sample import prepare_noise

    x = prepare_noise(torch.zeros(2, 4, 16, 16), seed).double()  # the node's initial noise
    sch = reference_scheduler()
    sch.set_timesteps(steps)
    for t in sch.timesteps:
        v = ns.gaussian_ideal_v(x, REF_AC[int(t)], MU, S)
        x = sch.step(v, t, x, eta=0.0).prev_sample
    # The only difference is ComfyUI's finite sigma_max at the first step (a 2.2e-4 share of noise).
    assert (ours.double() - x).abs().max().item() < 2e-3


# -- the exact-denoiser proof ----------------------------------------------------------------------------------

# Steps per sampler so its own discretisation error is well inside the tolerance (measured, see README).
STEPS = {"ddim": 200, "euler": 200, "euler_ancestral": 400, "ddpm": 400, "lms": 100, "dpmpp_2m": 100,
         "uni_pc": 100, "dpmpp_2m_sde": 200, "dpmpp_sde": 100}


def test_every_offered_sampler_has_a_step_count(sn):
    assert set(STEPS) == set(sn.ZERO_SNR_SAMPLERS)
    assert sn.DEFAULT_SAMPLER in sn.ZERO_SNR_SAMPLERS and "trailing" == sn.ZERO_SNR_SCHEDULERS[0]


@pytest.mark.parametrize("scheduler", ["trailing", "simple", "sgm_uniform", "normal", "beta"])
@pytest.mark.parametrize("sampler", list(STEPS))
def test_exact_denoiser_recovers_data_distribution(comfy, fox, zsnr_model, sn, sampler, scheduler):
    assert scheduler in sn.ZERO_SNR_SCHEDULERS
    m = with_exact(zsnr_model)
    out = run_sampler(comfy, fox, m, sampler=sampler, scheduler=scheduler, steps=STEPS[sampler], seed=3)
    mean_err, std_err = stats_errors(m, out)
    print(f"EXACT {sampler} {scheduler} steps={STEPS[sampler]} mean_err/s={mean_err:+.4f} std_rel={std_err:+.4f}")
    assert abs(mean_err) < MEAN_TOL and abs(std_err) < STD_TOL, (mean_err, std_err)


def test_default_at_default_settings_with_guidance(comfy, fox, zsnr_model):
    """Default node settings (ddim, trailing, cfg 7.5, rescale 0.7) with cond = uncond: guidance is a no-op,
    so the full CFG + rescale path must leave the distribution intact; 200 steps to bound Euler's error."""
    m = with_exact(zsnr_model)
    out = run_sampler(comfy, fox, m, steps=200, cfg=7.5, cfg_rescale=0.7, seed=4)
    mean_err, std_err = stats_errors(m, out)
    print(f"EXACT default cfg=7.5 steps=200 mean_err/s={mean_err:+.4f} std_rel={std_err:+.4f}")
    assert abs(mean_err) < MEAN_TOL and abs(std_err) < STD_TOL


@pytest.mark.parametrize("wrong", ["v_without_zero_snr", "eps_with_zero_snr", "v_sign_flipped"])
def test_negative_controls_fail_the_same_check(comfy, fox, zsnr_model, wrong):
    """The check has teeth: each deliberate mistake leaves the tolerance."""
    if wrong == "v_sign_flipped":
        m = with_exact(zsnr_model, sign=-1.0)
    else:
        adv = comfy.node_class("ModelSamplingDiscrete")()
        sampling, z = ("v_prediction", False) if wrong == "v_without_zero_snr" else ("eps", True)
        m = with_exact(adv.patch(fox["model"], sampling, z)[0])
    if wrong == "eps_with_zero_snr":  # AtomoVideoSampler refuses this model; ComfyUI's KSampler does not
        out = comfy.ksample(m, fox["pos"], fox["neg"], {"samples": torch.zeros(SHAPE)}, seed=3, steps=200,
                            sampler="euler", scheduler="simple")["samples"]
    else:
        out = run_sampler(comfy, fox, m, steps=200, seed=3)
    mean_err, std_err = stats_errors(m, out)
    print(f"NEGATIVE {wrong} mean_err/s={mean_err:+.4f} std_rel={std_err:+.4f}")
    assert not (abs(mean_err) < MEAN_TOL and abs(std_err) < STD_TOL)


# -- seeds, frames, finiteness ---------------------------------------------------------------------------------

def test_seed_determinism_with_real_unet(comfy, fox, zsnr_model):
    kw = dict(steps=2, cfg=7.5, shape=(2, 4, 8, 8))
    a = run_sampler(comfy, fox, zsnr_model, seed=11, **kw)
    b = run_sampler(comfy, fox, zsnr_model, seed=11, **kw)
    c = run_sampler(comfy, fox, zsnr_model, seed=12, **kw)
    assert torch.isfinite(a).all() and torch.equal(a, b)
    assert (a - c).abs().max().item() > 1e-3


def test_frames_get_independent_noise(comfy, fox, zsnr_model):
    m = with_exact(zsnr_model)
    out = model_space(m, run_sampler(comfy, fox, m, steps=10, seed=5)).flatten(1)
    out = out - out.mean(dim=1, keepdim=True)
    corr = (out @ out.T) / (out.norm(dim=1)[:, None] * out.norm(dim=1)[None, :])
    off = corr[~torch.eye(len(corr), dtype=torch.bool)]
    assert off.abs().max().item() < 0.1, corr  # 4096 elements per frame: chance level ~0.016


@pytest.mark.parametrize("steps", [1, 2, 25])
def test_finite_for_every_offered_pair(comfy, fox, zsnr_model, sn, steps):
    """Guidance with different cond / uncond predictions at cfg 7.5 and rescale 0.7 stresses the rescale too."""
    m = with_exact(zsnr_model, mu_cond=MU, mu_uncond=-0.5)
    bad = []
    for sampler in sn.ZERO_SNR_SAMPLERS:
        for scheduler in sn.ZERO_SNR_SCHEDULERS:
            out = run_sampler(comfy, fox, m, sampler=sampler, scheduler=scheduler, steps=steps, cfg=7.5,
                              shape=(2, 4, 8, 8), seed=steps)
            # Guided mean -0.5 + 7.5 * 2 = 14.5 in model units: far larger values mean a blown-up step.
            if not torch.isfinite(out).all() or model_space(m, out).abs().max().item() > 30:
                bad.append((sampler, scheduler))
    assert not bad


def test_real_unet_default_pair_finite(comfy, fox, zsnr_model):
    for steps in (1, 2):
        out = run_sampler(comfy, fox, zsnr_model, steps=steps, cfg=7.5, shape=(2, 4, 8, 8))
        assert torch.isfinite(out).all() and out.std().item() > 0


# -- guidance rescale --------------------------------------------------------------------------------------------

def test_post_cfg_rescale_matches_comfy_rescalecfg(comfy):
    glue = comfy.pack_module("atomo_host.zero_snr")
    rescale_node = comfy.node_class("RescaleCFG")()

    class _Capture:  # RescaleCFG.patch needs a clone() that records the cfg function
        def clone(self):
            return self

        def set_model_sampler_cfg_function(self, fn):
            self.fn = fn

    cap = rescale_node.patch(_Capture(), 0.7)[0]
    g = torch.Generator().manual_seed(0)
    sigma = torch.tensor([4518.76, 14.6, 1.0, 0.0292], dtype=torch.float64)
    x0_true = torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64)
    x = x0_true + sigma.view(-1, 1, 1, 1) * torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64)
    cond = x0_true + 0.1 * torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64)
    uncond = x0_true + 0.3 * torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64)
    scale = 7.5
    ref = x - cap.fn({"cond": x - cond, "uncond": x - uncond, "cond_scale": scale, "input": x, "sigma": sigma})
    ours = glue.make_cfg_rescale(0.7)({"denoised": uncond + scale * (cond - uncond), "cond_denoised": cond,
                                        "uncond_denoised": uncond, "cond_scale": scale, "sigma": sigma,
                                        "input": x})
    assert ((ours - ref).abs() / (ref.abs() + 1)).max().item() < 1e-6
    # It is Lin et al.'s formula on v (atomo_core), and a no-op at cfg 1.
    ab = 1.0 / (1.0 + sigma.view(-1, 1, 1, 1) ** 2)
    x_t = x * ab.sqrt()
    v = ns.cfg_rescale(ns.v_from_x0(x_t, cond, ab), ns.v_from_x0(x_t, uncond, ab), scale, 0.7)
    assert torch.allclose(ours, ns.x0_from_v(x_t, v, ab), atol=1e-6)
    same = glue.make_cfg_rescale(0.7)({"denoised": cond, "cond_denoised": cond, "uncond_denoised": None,
                                       "cond_scale": 1.0, "sigma": sigma, "input": x})
    assert torch.equal(same, cond)


def test_rescale_is_set_once_and_replaceable(comfy, fox):
    glue = comfy.pack_module("atomo_host.zero_snr")
    m1 = glue.apply_zero_snr_vprediction(fox["model"], cfg_rescale=0.7)
    m2 = comfy.call("AtomoVideoModelSampling", model=m1, cfg_rescale=0.5)[0]
    fns = m2.model_options.get("sampler_post_cfg_function", [])
    assert len(fns) == 1 and getattr(fns[0], "atomovideo_cfg_rescale") == 0.5
    assert len(m1.model_options["sampler_post_cfg_function"]) == 1  # the input clone is untouched
    assert glue.set_cfg_rescale(m2, 0.0).model_options["sampler_post_cfg_function"] == []
    assert "sampler_post_cfg_function" not in fox["model"].model_options or \
        not fox["model"].model_options["sampler_post_cfg_function"]


# -- refusals and other paths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scheduler", ["karras", "exponential", "ddim_uniform", "linear_quadratic", "kl_optimal"])
def test_unsuitable_schedulers_refused_at_zero_snr(comfy, fox, zsnr_model, scheduler):
    with pytest.raises(ValueError, match=r"AtomoVideoSampler, input 'scheduler'.*trailing"):
        run_sampler(comfy, fox, zsnr_model, scheduler=scheduler, steps=2, shape=(1, 4, 8, 8))


@pytest.mark.parametrize("sampler", ["lcm", "heun", "dpm_2", "dpm_fast"])
def test_unverified_sampler_refused_at_zero_snr(comfy, fox, zsnr_model, sampler):
    with pytest.raises(ValueError, match=rf"input 'sampler_name'.*'{sampler}'.*ddim"):
        run_sampler(comfy, fox, zsnr_model, sampler=sampler, steps=2, shape=(1, 4, 8, 8))


def test_eps_with_zero_snr_refused(comfy, fox):
    m = comfy.node_class("ModelSamplingDiscrete")().patch(fox["model"], "eps", True)[0]
    with pytest.raises(ValueError, match=r"input 'model'.*predicts eps.*v-prediction"):
        run_sampler(comfy, fox, m, steps=2, shape=(1, 4, 8, 8))


def test_trailing_step_limit_is_a_clear_error(comfy, fox, zsnr_model):
    with pytest.raises(ValueError, match=r"input 'steps'.*1000 training timesteps"):
        run_sampler(comfy, fox, zsnr_model, steps=600, denoise=0.5, shape=(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"input 'steps'"):
        run_sampler(comfy, fox, zsnr_model, sampler="uni_pc", steps=1000, shape=(1, 4, 8, 8))


def test_eps_model_keeps_comfy_choices(comfy, fox):
    """PIA / AnimateDiff style eps models are not zero-SNR: karras and any sampler stay allowed."""
    out = run_sampler(comfy, fox, fox["model"], sampler="dpmpp_2m", scheduler="karras", steps=2,
                      cfg=7.5, shape=(2, 4, 8, 8))
    assert torch.isfinite(out).all()


def test_noise_mask_pins_given_frame(comfy, fox, zsnr_model):
    m = with_exact(zsnr_model)
    given = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    mask = torch.ones(3, 1, 8, 8)
    mask[0] = 0.0  # frame 0 is given
    out = run_sampler(comfy, fox, m, steps=10, latent={"samples": given, "noise_mask": mask})
    assert torch.allclose(out[0], given[0], atol=1e-4)
    assert (out[1:] - given[1:]).abs().mean().item() > 0.5


def test_partial_denoise_and_zero_denoise(comfy, fox, zsnr_model):
    m = with_exact(zsnr_model)
    given = model_space(m, torch.zeros(1)) + torch.full((2, 4, 8, 8), MU / 0.18215)
    half = run_sampler(comfy, fox, m, steps=10, denoise=0.5, latent={"samples": given.clone()})
    assert torch.isfinite(half).all()
    none = run_sampler(comfy, fox, m, steps=10, denoise=0.0, latent={"samples": given.clone()})
    assert torch.equal(none, given)


def test_progress_and_interrupt(comfy, fox, zsnr_model):
    from comfy import model_management as mm
    from comfy import utils as cu

    calls = []

    def hook(value, total, preview, node_id=None):
        calls.append((value, total))
        mm.throw_exception_if_processing_interrupted()  # what ComfyUI's server hook does

    prev = cu.PROGRESS_BAR_HOOK
    cu.set_progress_bar_global_hook(hook)
    try:
        run_sampler(comfy, fox, with_exact(zsnr_model), steps=5, shape=(1, 4, 8, 8))
        assert calls[-1] == (5, 5) and len(calls) == 5
        calls.clear()

        def interrupting(value, total, preview, node_id=None):
            calls.append(value)
            if value == 2:
                mm.interrupt_current_processing(True)
            mm.throw_exception_if_processing_interrupted()

        cu.set_progress_bar_global_hook(interrupting)
        with pytest.raises(mm.InterruptProcessingException):
            run_sampler(comfy, fox, with_exact(zsnr_model), steps=5, shape=(1, 4, 8, 8))
        assert calls == [1, 2]
    finally:
        mm.interrupt_current_processing(False)
        cu.set_progress_bar_global_hook(prev)


def test_prompt_through_the_host(comfy, tiny_models):
    """The nodes as a user wires them: loader -> model sampling -> sampler -> SaveLatent."""
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["checkpoint"]}},
        "2": {"class_type": "AtomoVideoModelSampling", "inputs": {"model": ["1", 0], "cfg_rescale": 0.7}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a boat"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 3}},
        "6": {"class_type": "AtomoVideoSampler", "inputs": {
            "model": ["2", 0], "positive": ["3", 0], "negative": ["4", 0], "latent": ["5", 0], "seed": 1,
            "steps": 2, "cfg": 7.5, "cfg_rescale": 0.7, "sampler_name": "ddim", "scheduler": "trailing",
            "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "atomo_sampler"}},
    }
    _, outputs = comfy.run(prompt)
    assert "7" in outputs
    from safetensors.torch import load_file

    files = sorted(comfy.output_dir.rglob("atomo_sampler*.latent"))
    saved = load_file(str(files[-1]))["latent_tensor"]
    assert saved.shape == (3, 4, 8, 8) and torch.isfinite(saved).all() and saved.std().item() > 0


def test_loader_sets_zero_snr_only_for_v_weights(comfy, fox, atomo_weights):
    """The loader's contract with zero_snr: v + zero-SNR metadata -> zero-SNR v sampling, eps -> untouched."""
    glue = comfy.pack_module("atomo_host.zero_snr")
    v_model = comfy.call("AtomoVideoLoader", model=fox["model"], weights=atomo_weights["fresh_v"])[0]
    eps_model = comfy.call("AtomoVideoLoader", model=fox["model"], weights=atomo_weights["fresh"])[0]
    assert glue.is_zero_snr(v_model) and glue.is_v_prediction(v_model)
    assert len(v_model.model_options.get("sampler_post_cfg_function", [])) == 1
    assert not glue.is_zero_snr(eps_model) and not glue.is_v_prediction(eps_model)
    out = run_sampler(comfy, fox, v_model, steps=2, cfg=7.5, shape=(2, 4, 8, 8))
    assert torch.isfinite(out).all()
