"""The AtomoVideo paper's claims measured on the demo model, against the synthetic world's ground truth.

`python -m atomo_demo claims [--clips N --steps S --out DIR]` (from the pack's folder, with ComfyUI's Python)
prints a table and writes `claims.json` and `claims.png`. `measure` returns the same numbers, so a test can
assert them on the committed weights.

Host-using, unlike the rest of `atomo_demo`: every video is made through the host glue the nodes use (the
loader's `video_model`, `condition_video` + `sample_run` as AtomoVideo Image Conditioning + AtomoVideo Sampler,
`next_segment` as Frame Continuation, `run_long_video` as Long Video), so the numbers are those of what users run.

1. first-frame fidelity: PSNR/SSIM of generated frame 0 against the demo VAE's round trip of the input image;
2. frame prediction: the first k true frames given (k = 2, 3, 4; pinned, as Frame Continuation gives them), the
   next 12 frames against the true ones, beside copy-last-frame and linear extrapolation from the same k frames
   and the VAE round trip of the true frames (the best the latent model can do);
3. motion: mean optical-flow magnitude of image-to-video samples, of the clips themselves, and of the same model
   with its temporal layers' output projections zeroed (identity layers; the 9-channel input kept);
4. long video: 4 chained segments, per-segment colour drift (CIELAB distance of the mean colour to the input)
   and sharpness (Laplacian variance), drift control off and on.
Intervals are 95 % Student-t intervals over the clips; `--clips` tightens them.
5. v vs eps (`atomo_demo.v_vs_eps`), when the eps model's files are given (`--eps-base`, `--eps-atomovideo`, and
   `--v-same-schedule`: the v model's file after the same steps): brightness error of frame 0 and of the clip.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import comfy.model_management
import comfy.sd
import comfy.utils
import numpy as np
import torch

from ..atomo_core.metrics import fidelity, motion, plots
from ..atomo_core.metrics import prediction as pred
from ..atomo_core.temporal_layers import zero_outputs_
from ..atomo_core.weight_files import load_temporal_weights
from ..atomo_core.weight_format import AtomoVideoWeights
from ..atomo_host import demo_model
from ..atomo_host.conditioning import ImageConditioning, condition_video
from ..atomo_host.continuation import GivenFrames, LongVideo, NextSegment, next_segment, run_long_video
from ..atomo_host.inflation import host_layout
from ..atomo_host.loading import LoadSettings, video_model
from ..atomo_host.sampling import SamplingSettings, sample_run
from ..atomo_host.small_base import load_small_base
from . import v_vs_eps, world

NOT_MEASURED = ("not measured: pass --eps-base and --eps-atomovideo (`python -m atomo_demo.retrain OUT --with-eps` "
                "trains them): an eps model trained like the v model (same data, steps and masks), not shipped")


@dataclass(frozen=True)
class DemoFiles:
    """The demo's model files (defaults: the ones the pack ships)."""
    base: Path = demo_model.WEIGHTS_DIR / demo_model.DEFAULT_BASE
    vae: Path = demo_model.WEIGHTS_DIR / demo_model.VAE_FILE
    atomovideo: Path = demo_model.ATOMOVIDEO_DIR / demo_model.ATOMOVIDEO_FILE


@dataclass(frozen=True)
class EpsComparison:
    """Claim 5's files: an eps base and eps AtomoVideo file trained like the v model, and the v model's file after
    the same steps (None: `DemoFiles.atomovideo`)."""
    eps_base: Path
    eps_atomovideo: Path
    v_atomovideo: Path | None = None


@dataclass(frozen=True)
class ClaimsSettings:
    clips: int = 8                 # clips of the world split `split`
    split: str = "test"            # held out; "train" asks how well the model learnt clips it was trained on
    steps: int = 10
    cfg: float = 1.0
    seed: int = 0                  # clip i samples with seed + i
    window: int = 16               # frames per sampling run (the weights' max_frames at most)
    given: tuple = (2, 3, 4)       # k true frames given for frame prediction
    predict: int = 12              # predicted frames scored after the k given ones
    segments: int = 4              # long video: chained segments
    context_frames: int = 4        # long video: frames handed over between segments
    size: int = 64


@dataclass
class Demo:
    """Everything the measurements sample with: the base, its VAE, empty conditioning, and both model arms."""
    base: object
    vae: object
    conditioning: tuple
    weights: AtomoVideoWeights
    name: str
    arms: dict = field(default_factory=dict)  # "model" / "zeroed" -> inflated MODEL


def zeroed_temporal(weights: AtomoVideoWeights) -> AtomoVideoWeights:
    """The same weights with every temporal layer's output projection at zero (each layer is then the
    identity), the extra input channels and the metadata kept."""
    layers = weights.build_layers()
    temporal = {}
    for name, layer in layers.items():
        zero_outputs_(layer)
        temporal[name] = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    extra = None if weights.conv_in_extra is None else weights.conv_in_extra.clone()
    return AtomoVideoWeights(weights.metadata, temporal, extra, weights.image_proj)


def load_demo(files: DemoFiles) -> Demo:
    for what, path in asdict(files).items():
        if not Path(path).is_file():
            how = demo_model.REGENERATE.get(Path(path).name, "")
            raise FileNotFoundError(f"claims: the demo's {what} file {path} is missing; pass --{what} FILE"
                                    + (f", or regenerate it: {how}" if how else ""))
    base = load_small_base(files.base)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(files.vae)))
    empty = demo_model.empty_conditioning(base.model.model_config.unet_config["context_dim"])
    weights = load_temporal_weights(files.atomovideo, layout=host_layout(base.get_model_object("diffusion_model")))
    demo = Demo(base, vae, (empty, empty), weights, Path(files.atomovideo).name)
    settings = LoadSettings(weights=demo.name)
    demo.arms["model"] = video_model(base, weights, settings)
    demo.arms["zeroed"] = video_model(base, zeroed_temporal(weights), settings)
    return demo


def _np(images: torch.Tensor) -> np.ndarray:
    return images.detach().float().clamp(0, 1).cpu().numpy()


def _decode(demo: Demo, latents: torch.Tensor) -> np.ndarray:
    return _np(demo.vae.decode(latents))


def _sampling(s: ClaimsSettings, seed: int) -> SamplingSettings:
    return SamplingSettings(seed=seed, steps=s.steps, cfg=s.cfg)


def image_to_video(demo: Demo, arm: str, image: np.ndarray, s: ClaimsSettings, seed: int) -> np.ndarray:
    """An i2v video [window, H, W, 3] of `image` [H, W, 3], as Image Conditioning + Sampler make it."""
    pos, neg, latent = condition_video(demo.conditioning, demo.vae, torch.from_numpy(image)[None],
                                       ImageConditioning(frames=s.window, width=s.size, height=s.size))
    return _decode(demo, sample_run(demo.arms[arm], pos, neg, latent, _sampling(s, seed)))


def continue_frames(demo: Demo, given: np.ndarray, s: ClaimsSettings, seed: int) -> np.ndarray:
    """The window continuing the k frames `given` (pinned at positions 0..k-1), as Frame Continuation makes it."""
    k = given.shape[0]
    pos, neg, latent = next_segment(demo.arms["model"], demo.conditioning, demo.vae,
                                    {"frames": torch.from_numpy(given)},
                                    NextSegment(context_frames=k, new_frames=s.window - k, pin_context=True))
    return _decode(demo, sample_run(demo.arms["model"], pos, neg, latent, _sampling(s, seed)))


def _scores(video: np.ndarray, truth: np.ndarray) -> dict:
    psnr = [fidelity.psnr_from_mse(fidelity.mse(a, b)) for a, b in zip(video, truth)]
    ssim = [fidelity.ssim(a, b) for a, b in zip(video, truth)]
    return {"psnr": psnr, "ssim": ssim}


def _flow(video: np.ndarray) -> list[float]:
    return motion.motion_and_warp(video)["flow_magnitude"]


def long_video(demo: Demo, image: np.ndarray, s: ClaimsSettings, seed: int, drift: float) -> np.ndarray:
    total = s.window + (s.segments - 1) * (s.window - s.context_frames)
    img = torch.from_numpy(image)[None]
    out = run_long_video(demo.arms["model"], *demo.conditioning, demo.vae,
                         LongVideo(width=s.size, height=s.size, total_frames=total, segment_frames=s.window,
                                   context_frames=s.context_frames, drift_strength=drift),
                         _sampling(s, seed), GivenFrames(image=img, reference=img))
    return _np(out)


def segment_bounds(s: ClaimsSettings) -> list[tuple[int, int]]:
    """Frames each segment adds to the long video: the first run whole, then window - context per run."""
    new = s.window - s.context_frames
    return [(0, s.window)] + [(s.window + i * new, s.window + (i + 1) * new) for i in range(s.segments - 1)]


def measure_clip(demo: Demo, seed: int, s: ClaimsSettings, sample_seed: int) -> dict:
    """Every raw number of one test clip (per frame / per pair / per segment)."""
    clip, caption = world.make_clip(seed, frames=max(32, s.window), size=s.size)
    truth = clip[:s.window].astype(np.float32) / 255.0
    roundtrip = _decode(demo, demo.vae.encode(torch.from_numpy(truth)))
    out = {"seed": seed, "caption": caption}
    video = image_to_video(demo, "model", truth[0], s, sample_seed)
    zeroed = image_to_video(demo, "zeroed", truth[0], s, sample_seed)
    out["first_frame"] = {k: v[0] for k, v in _scores(video[:1], roundtrip[:1]).items()}
    out["motion"] = {"clips": _flow(truth), "generated": _flow(video), "zeroed_temporal": _flow(zeroed)}
    out["prediction"], out["prediction_vae_space"] = {}, {}
    for k in s.given:
        target = truth[k:k + s.predict]
        made = continue_frames(demo, truth[:k], s, sample_seed)[k:k + s.predict]
        out["prediction"][k] = {
            "model": _scores(made, target),
            "copy_last": _scores(pred.copy_last(truth[:k], len(target)), target),
            "linear": _scores(pred.linear_extrapolation(truth[:k], len(target)), target),
            "vae_roundtrip": _scores(roundtrip[k:k + s.predict], target),
        }
        # The same comparison with the VAE's own error taken out: targets and given frames round-tripped.
        rt_target = roundtrip[k:k + s.predict]
        out["prediction_vae_space"][k] = {
            "model": _scores(made, rt_target),
            "copy_last": _scores(pred.copy_last(roundtrip[:k], len(rt_target)), rt_target),
            "linear": _scores(pred.linear_extrapolation(roundtrip[:k], len(rt_target)), rt_target),
        }
    out["long_video"] = {"input_sharpness": pred.laplacian_variance(truth[:1])[0]}
    for name, strength in (("drift_off", 0.0), ("drift_on", 1.0)):
        frames = long_video(demo, truth[0], s, sample_seed, strength)
        drift, sharp = pred.lab_mean_distance(frames, truth[0]), pred.laplacian_variance(frames)
        out["long_video"][name] = {"drift": drift, "sharpness": sharp,
                                   "segment_drift": [float(np.mean(drift[a:b])) for a, b in segment_bounds(s)],
                                   "segment_sharpness": [float(np.mean(sharp[a:b])) for a, b in segment_bounds(s)]}
    out["videos"] = {"truth": truth, "generated": video, "zeroed": zeroed}
    return out


def _ci(values) -> dict:
    return pred.mean_ci([float(v) for v in values])


def _per_frame_mean(rows) -> list[float]:
    return np.mean(np.asarray(rows, dtype=np.float64), axis=0).tolist()


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _prediction(clips: list[dict], s: ClaimsSettings, key: str, arms: tuple) -> dict:
    fp = {}
    for k in s.given:
        rows = {arm: [c[key][k][arm] for c in clips] for arm in arms}
        entry = {arm: {m: _ci(np.mean(r[m]) for r in rs) for m in ("psnr", "ssim")} for arm, rs in rows.items()}
        for base in ("copy_last", "linear"):
            entry[f"model_minus_{base}"] = {
                m: _ci(np.mean(a[m]) - np.mean(b[m]) for a, b in zip(rows["model"], rows[base]))
                for m in ("psnr", "ssim")}
        entry["per_frame"] = {arm: {m: _per_frame_mean([r[m] for r in rs]) for m in ("psnr", "ssim")}
                              for arm, rs in rows.items()}
        entry["frames"] = [k, k + len(rows["model"][0]["psnr"]) - 1]
        fp[f"k{k}"] = entry
    return fp


def summarise(clips: list[dict], s: ClaimsSettings) -> dict:
    """Means with 95 % intervals over the clips, the comparisons the claims make, and mean per-frame curves."""
    res = {"first_frame": {m: _ci(c["first_frame"][m] for c in clips) for m in ("psnr", "ssim")}}
    res["frame_prediction"] = _prediction(clips, s, "prediction", ("model", "copy_last", "linear", "vae_roundtrip"))
    res["frame_prediction_vae_space"] = _prediction(clips, s, "prediction_vae_space", ("model", "copy_last", "linear"))
    mot = {arm: _ci(np.mean(c["motion"][arm]) for c in clips) for arm in ("clips", "generated", "zeroed_temporal")}
    mot["generated_over_clips"] = _ratio(mot["generated"]["mean"], mot["clips"]["mean"])
    mot["generated_over_zeroed"] = _ratio(mot["generated"]["mean"], mot["zeroed_temporal"]["mean"])
    mot["generated_minus_zeroed"] = _ci(np.mean(c["motion"]["generated"]) - np.mean(c["motion"]["zeroed_temporal"])
                                        for c in clips)
    mot["per_pair"] = {arm: _per_frame_mean([c["motion"][arm] for c in clips])
                       for arm in ("clips", "generated", "zeroed_temporal")}
    res["motion"] = mot
    lv = {"input_sharpness": _ci(c["long_video"]["input_sharpness"] for c in clips), "segments": s.segments}
    for name in ("drift_off", "drift_on"):
        seg_d = [_ci(c["long_video"][name]["segment_drift"][i] for c in clips) for i in range(s.segments)]
        seg_s = [_ci(c["long_video"][name]["segment_sharpness"][i] for c in clips) for i in range(s.segments)]
        lv[name] = {"segment_drift": seg_d, "segment_sharpness": seg_s,
                    "last_over_first_drift": _ratio(seg_d[-1]["mean"], seg_d[0]["mean"]),
                    "per_frame_drift": _per_frame_mean([c["long_video"][name]["drift"] for c in clips])}
    res["long_video"] = lv
    res["v_vs_eps"] = {"measured": False, "reason": NOT_MEASURED}
    res["per_clip"] = [_clip_row(c) for c in clips]
    return res


def _clip_row(c: dict) -> dict:
    """One clip's numbers as the summary averages them (frame means), to check or re-pool."""
    def means(scores):
        return {m: float(np.mean(v)) for m, v in scores.items()}

    return {"seed": c["seed"], "caption": c["caption"], "first_frame": c["first_frame"],
            "motion": {arm: float(np.mean(v)) for arm, v in c["motion"].items()},
            **{key: {f"k{k}": {arm: means(sc) for arm, sc in by_arm.items()} for k, by_arm in c[key].items()}
               for key in ("prediction", "prediction_vae_space")},
            "long_video_segment_drift": {name: c["long_video"][name]["segment_drift"]
                                         for name in ("drift_off", "drift_on")}}


def measure_v_vs_eps(files: DemoFiles, cmp: EpsComparison, s: ClaimsSettings, log=print) -> dict:
    """Claim 5: the same image-to-video runs with the v model and with the eps model (`atomo_demo.v_vs_eps`)."""
    arm_files = {"v": DemoFiles(files.base, files.vae, cmp.v_atomovideo or files.atomovideo),
                 "eps": DemoFiles(cmp.eps_base, files.vae, cmp.eps_atomovideo)}
    arms = {}
    for name, f in arm_files.items():
        demo = load_demo(f)
        try:
            with torch.no_grad():
                arms[name] = v_vs_eps.measure_arm(demo, s, log)
        finally:
            comfy.model_management.unload_all_models()
    out = v_vs_eps.summarise(arms)
    training = {name: v_vs_eps.training_record(f.atomovideo) for name, f in arm_files.items()}
    out["files"] = {name: {k: str(v) for k, v in asdict(f).items()} for name, f in arm_files.items()}
    out["training"] = training
    out["same_schedule"] = v_vs_eps.same_schedule(training["v"], training["eps"])
    return out


def measure(files: DemoFiles = DemoFiles(), s: ClaimsSettings = ClaimsSettings(), log=print,
            eps: EpsComparison | None = None) -> tuple[dict, list]:
    """(claims dict, per-clip raw results incl. videos) for `s.clips` clips of `s.split`; claim 5 with `eps`."""
    start = time.perf_counter()
    demo = load_demo(files)
    clips = []
    try:
        with torch.no_grad():
            for i, seed in enumerate(world.split_seeds(s.split, s.clips)):
                t0 = time.perf_counter()
                clips.append(measure_clip(demo, seed, s, s.seed + i))
                log(f"claims: clip {i + 1}/{s.clips} (seed {seed}) measured in {time.perf_counter() - t0:.1f} s")
    finally:
        comfy.model_management.unload_all_models()
    res = summarise(clips, s)
    if eps is not None:
        res["v_vs_eps"] = measure_v_vs_eps(files, eps, s, log)
    res["settings"] = {**asdict(s), "given": list(s.given)}
    res["files"] = {k: str(v) for k, v in asdict(files).items()}
    res["seeds"] = [c["seed"] for c in clips]
    res["seconds"] = time.perf_counter() - start
    return res, clips


def _fmt_ci(ci: dict, fmt: str = "{:.3f}") -> str:
    if ci["mean"] is None:
        return "n/a"
    if ci["ci_low"] is None:
        return fmt.format(ci["mean"])
    return f"{fmt.format(ci['mean'])} [{fmt.format(ci['ci_low'])}, {fmt.format(ci['ci_high'])}]"


def _fmt_ratio(r) -> str:
    return "n/a" if r is None else f"{r:.2f}"


def _prediction_rows(fp: dict, arms: tuple) -> list[str]:
    lines = []
    for key, e in fp.items():
        span = f"{e['frames'][0]}-{e['frames'][1]}"
        for m, fmt in (("psnr", "{:.2f}"), ("ssim", "{:.3f}")):
            cells = "".join(f"{_fmt_ci(e[arm][m], fmt):<24}" for arm in arms) + " " * 24 * (4 - len(arms))
            lines.append(f"   {key[1:]:<3}{span:<8}{cells}{_fmt_ci(e['model_minus_copy_last'][m], fmt)}  "
                         f"({m.upper()})")
    return lines


def _v_vs_eps_rows(ve: dict) -> list[str]:
    if not ve.get("measured"):
        return [f"5. v vs eps: {ve['reason']}"]
    steps = {k: ve["training"][k].get("step", "?") for k in ("v", "eps")}
    same = "the same schedule" if ve["same_schedule"] else "DIFFERENT schedules"
    lines = [f"5. v vs eps: brightness error, |mean L*| of generated vs round-tripped true frames "
             f"(v {steps['v']} steps, eps {steps['eps']} steps: {same})"]
    for arm in ("v", "eps"):
        lines.append(f"   {arm:<4} frame 0 {_fmt_ci(ve[arm]['frame0'], '{:.2f}')}   clip "
                     f"{_fmt_ci(ve[arm]['clip'], '{:.2f}')}   signed clip mean "
                     f"{_fmt_ci(ve[arm]['clip_signed'], '{:.2f}')}")
    lines.append(f"   eps - v  frame 0 {_fmt_ci(ve['eps_minus_v']['frame0'], '{:.2f}')}   clip "
                 f"{_fmt_ci(ve['eps_minus_v']['clip'], '{:.2f}')}")
    return lines


def table(res: dict) -> str:
    """The claims as text rows: mean [95 % interval] over the clips."""
    n, split = len(res["seeds"]), res["settings"].get("split", "test")
    which = "held-out test clips" if split == "test" else f"clips of the world's {split} split"
    lines = [(f"AtomoVideo demo claims on {n} {which}, {res['settings']['steps']} steps, "
              f"cfg {res['settings']['cfg']} (mean [95 % CI])"), ""]
    ff = res["first_frame"]
    lines += ["1. first-frame fidelity vs the VAE round trip of the input",
              f"   PSNR dB {_fmt_ci(ff['psnr'], '{:.2f}')}   SSIM {_fmt_ci(ff['ssim'])}", "",
              "2. frame prediction (first k true frames given; next frames vs ground truth)",
              (f"   {'k':<3}{'frames':<8}{'model':<24}{'copy last':<24}{'linear extrap.':<24}"
               f"{'VAE round trip':<24}model - copy last")]
    lines += _prediction_rows(res["frame_prediction"], ("model", "copy_last", "linear", "vae_roundtrip"))
    lines += [("   the same against the VAE round trip of the true frames (baselines from round-tripped given "
               "frames; the VAE's own error taken out)")]
    lines += _prediction_rows(res["frame_prediction_vae_space"], ("model", "copy_last", "linear"))
    mo = res["motion"]
    lines += ["", "3. motion: mean optical-flow magnitude, px per frame",
              (f"   the clips {_fmt_ci(mo['clips'])}   generated {_fmt_ci(mo['generated'])}   "
               f"temporal layers zeroed {_fmt_ci(mo['zeroed_temporal'])}"),
              (f"   generated / clips {_fmt_ratio(mo['generated_over_clips'])}   generated / zeroed "
               f"{_fmt_ratio(mo['generated_over_zeroed'])}"), ""]
    lv = res["long_video"]
    lines.append(f"4. long video: {lv['segments']} chained segments; colour drift (CIELAB distance of the mean "
                 "colour to the input) and sharpness (Laplacian variance; input "
                 f"{_fmt_ci(lv['input_sharpness'], '{:.0f}')})")
    for name in ("drift_off", "drift_on"):
        d = lv[name]
        drift = "  ".join(f"{x['mean']:.2f}" for x in d["segment_drift"])
        sharp = "  ".join(f"{x['mean']:.0f}" for x in d["segment_sharpness"])
        lines.append(f"   {name.replace('_', ' control '):<18} drift per segment {drift}   (last/first "
                     f"{_fmt_ratio(d['last_over_first_drift'])})   sharpness {sharp}")
    lines += ["", *_v_vs_eps_rows(res["v_vs_eps"]), f"({res['seconds']:.0f} s)"]
    return "\n".join(lines)


def plot(res: dict) -> np.ndarray:
    """Four panels [H, W, 3] in [0, 1]: prediction PSNR and SSIM per frame (largest k), flow per frame pair,
    long-video colour drift per frame."""
    from PIL import Image, ImageDraw

    key = f"k{max(res['settings']['given'])}"
    e = res["frame_prediction"][key]
    first = e["frames"][0]
    xs = list(range(first, e["frames"][1] + 1))
    labels = {"model": "model", "copy_last": "copy last", "linear": "linear extrap.", "vae_roundtrip": "VAE ceiling"}
    window = res["settings"]["window"]
    img = Image.new("RGB", (plots.WIDTH, plots.PANEL_H * 4), plots.BG)
    d = ImageDraw.Draw(img)
    for i, (m, unit) in enumerate((("psnr", "dB"), ("ssim", "SSIM"))):
        plots._panel(d, i * plots.PANEL_H, f"Prediction, {key[1:]} frames given: {m.upper()}",
                     [(labels[a], e["per_frame"][a][m], xs) for a in labels], ylabel=unit, n_frames=window)
    mo = res["motion"]["per_pair"]
    pairs = list(range(1, window))
    plots._panel(d, 2 * plots.PANEL_H, "Motion: mean |flow| per frame pair",
                 [("the clips", mo["clips"], pairs), ("generated", mo["generated"], pairs),
                  ("temporal zeroed", mo["zeroed_temporal"], pairs)], ylabel="px", fixed=(0.0, 0.0),
                 n_frames=window)
    lv = res["long_video"]
    n = len(lv["drift_off"]["per_frame_drift"])
    plots._panel(d, 3 * plots.PANEL_H, f"Long video ({lv['segments']} segments): colour drift",
                 [("drift control off", lv["drift_off"]["per_frame_drift"], list(range(n))),
                  ("drift control on", lv["drift_on"]["per_frame_drift"], list(range(n)))],
                 ylabel="delta E to input", fixed=(0.0, 0.0), n_frames=n)
    return np.asarray(img, dtype=np.float32) / 255.0


def write(res: dict, clips: list, out: Path) -> dict:
    """claims.json, claims.png and a contact sheet (per clip: truth, generated, temporal zeroed) into `out`."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "claims.json", "plot": out / "claims.png", "sheet": out / "claims_videos.png"}
    paths["json"].write_text(json.dumps(res, indent=2))
    Image.fromarray((plot(res) * 255).round().astype(np.uint8)).save(paths["plot"])
    rows = [c["videos"][k] for c in clips for k in ("truth", "generated", "zeroed")]
    Image.fromarray((plots.contact_sheet(rows) * 255).round().astype(np.uint8)).save(paths["sheet"])
    return paths


def parser() -> argparse.ArgumentParser:
    d, f = ClaimsSettings(), DemoFiles()
    ap = argparse.ArgumentParser(prog="python -m atomo_demo claims", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=d.clips,
                    help=f"clips of --split (default {d.clips}; more clips give tighter intervals, each costs "
                         "about as much as the first)")
    ap.add_argument("--steps", type=int, default=d.steps, help=f"sampling steps (default {d.steps})")
    ap.add_argument("--cfg", type=float, default=d.cfg, help=f"CFG scale (default {d.cfg})")
    ap.add_argument("--seed", type=int, default=d.seed, help="sampling seed of the first clip")
    ap.add_argument("--split", choices=world.SPLITS, default=d.split,
                    help="the world's clips to measure on (default test: held out; train: the clips the model "
                         "was trained on, which tells what the model can learn from what it generalises)")
    ap.add_argument("--out", default="output/claims", help="folder for claims.json and the plots")
    ap.add_argument("--base", default=str(f.base), help="small base UNet file")
    ap.add_argument("--vae", default=str(f.vae), help="VAE file")
    ap.add_argument("--atomovideo", default=str(f.atomovideo), help="AtomoVideo temporal-layer file")
    ap.add_argument("--eps-base", default=None, help="claim 5: the eps base UNet (retrain --with-eps: "
                    "OUT/base-eps/weights/demo_unet.safetensors)")
    ap.add_argument("--eps-atomovideo", default=None, help="claim 5: the eps AtomoVideo file (retrain --with-eps: "
                    "OUT/video-eps/demo_atomovideo.safetensors)")
    ap.add_argument("--v-same-schedule", default=None, help="claim 5: the v model's file after the eps model's steps "
                    "(retrain: OUT/video/demo_atomovideo-step00002000.safetensors; default --atomovideo)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.clips < 1 or args.steps < 1:
        print("claims: --clips and --steps must be at least 1", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, args.threads))
    files = DemoFiles(Path(args.base), Path(args.vae), Path(args.atomovideo))
    if (args.eps_base is None) != (args.eps_atomovideo is None):
        print("claims: --eps-base and --eps-atomovideo go together (the eps model's base and its AtomoVideo file)",
              file=sys.stderr)
        return 2
    v_file = None if args.v_same_schedule is None else Path(args.v_same_schedule)
    eps = None if args.eps_base is None else EpsComparison(Path(args.eps_base), Path(args.eps_atomovideo), v_file)
    try:
        res, clips = measure(files, ClaimsSettings(clips=args.clips, split=args.split, steps=args.steps, cfg=args.cfg,
                                                    seed=args.seed),
                             eps=eps)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)  # an in-process caller (a test) keeps its own
    paths = write(res, clips, Path(args.out))
    print(table(res))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
