"""Train-time draws of the given-frame mask and condition dropout, so the cache never freezes them.

Per sample: a mask kind by weight (first frame = image-to-video, first k frames = frame prediction, random
keyframes), then one r ~ U(0,1) for dropout by the DynamiCrafter/SVD rule: text dropped if r < 2p, image
conditioning dropped if p <= r < 3p. Text-only, image-only and both-dropped thus each have probability p.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .config_checks import get_bool, get_float, get_int, reject_unknown

SECTION = "conditioning"
KINDS = ("first_frame", "first_k", "keyframes")


@dataclass(frozen=True)
class DrawConfig:
    """The `[conditioning]` section. Weights are relative (they need not sum to 1)."""

    first_frame: float = 1.0
    first_k: float = 0.0
    k_max: int = 4
    keyframes: float = 0.0
    keyframes_max: int = 3
    dropout: float = 0.05
    dropout_image_tokens: bool = True
    dropout_concat: bool = True
    noise_aug: float = 0.0
    loss_on_given_frames: bool = True

    @classmethod
    def from_dict(cls, d: dict | None) -> "DrawConfig":
        d = {} if d is None else d
        reject_unknown(SECTION, d, [f.name for f in fields(cls)])
        s, dflt = SECTION, cls()
        cfg = cls(
            first_frame=get_float(s, d, "first_frame", dflt.first_frame, lo=0.0),
            first_k=get_float(s, d, "first_k", dflt.first_k, lo=0.0),
            k_max=get_int(s, d, "k_max", dflt.k_max, lo=1),
            keyframes=get_float(s, d, "keyframes", dflt.keyframes, lo=0.0),
            keyframes_max=get_int(s, d, "keyframes_max", dflt.keyframes_max, lo=1),
            dropout=get_float(s, d, "dropout", dflt.dropout, lo=0.0),
            dropout_image_tokens=get_bool(s, d, "dropout_image_tokens", dflt.dropout_image_tokens),
            dropout_concat=get_bool(s, d, "dropout_concat", dflt.dropout_concat),
            noise_aug=get_float(s, d, "noise_aug", dflt.noise_aug, lo=0.0),
            loss_on_given_frames=get_bool(s, d, "loss_on_given_frames", dflt.loss_on_given_frames),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        from .errors import ConfigError

        if self.first_frame + self.first_k + self.keyframes <= 0:
            raise ConfigError(f"{SECTION}.first_frame", "the mask weights first_frame, first_k and keyframes are "
                              "all 0; give at least one a positive weight (first_frame = 1.0 is image-to-video)")
        if self.dropout > 1 / 3:
            raise ConfigError(f"{SECTION}.dropout", f"must be at most 1/3 (text is dropped when r < 2p and the "
                              f"image when p <= r < 3p), got {self.dropout}; 0.05 to 0.1 is usual")

    def weights(self) -> dict[str, float]:
        total = self.first_frame + self.first_k + self.keyframes
        return {k: getattr(self, k) / total for k in KINDS}


@dataclass(frozen=True)
class Draw:
    """One sample's draw. `given` is what the model is shown: all False when the concat input is dropped.

    `image_frame` is the frame whose CLIP-vision tokens condition the sample (the first frame of the drawn mask,
    kept even when the concat is dropped, since the tokens are dropped separately).
    """

    given: torch.Tensor
    drop_text: bool
    drop_image_tokens: bool
    drop_concat: bool
    kind: str
    image_frame: int = 0


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(generator: torch.Generator, lo: int, hi: int) -> int:
    """Uniform on lo..hi inclusive."""
    return int(torch.randint(lo, hi + 1, (), generator=generator))


def draw(generator: torch.Generator, frames: int, cfg: DrawConfig) -> Draw:
    """Draw one sample's mask and dropout. k and keyframe counts never cover all frames (one is left to make)."""
    if frames < 2:
        raise ValueError(f"draw: a clip needs at least 2 frames (1 given, 1 generated), got frames={frames}")
    u = _uniform(generator) * (cfg.first_frame + cfg.first_k + cfg.keyframes)
    given = torch.zeros(frames, dtype=torch.bool)
    if u < cfg.first_frame:
        kind = "first_frame"
        given[0] = True
    elif u < cfg.first_frame + cfg.first_k:
        kind = "first_k"
        given[: _randint(generator, 1, min(cfg.k_max, frames - 1))] = True
    else:
        kind = "keyframes"
        n = _randint(generator, 1, min(cfg.keyframes_max, frames - 1))
        given[torch.randperm(frames, generator=generator)[:n]] = True
    image_frame = int(given.nonzero()[0, 0])

    p = cfg.dropout
    r = _uniform(generator)
    drop_text = r < 2 * p
    drop_image = p <= r < 3 * p
    drop_concat = drop_image and cfg.dropout_concat
    if drop_concat:
        given = torch.zeros(frames, dtype=torch.bool)
    return Draw(given=given, drop_text=drop_text, drop_image_tokens=drop_image and cfg.dropout_image_tokens,
                drop_concat=drop_concat, kind=kind, image_frame=image_frame)


def loss_frames(d: Draw, cfg: DrawConfig) -> torch.Tensor:
    """BoolTensor[F]: the frames the loss counts (given frames are left out when loss_on_given_frames=false)."""
    return torch.ones_like(d.given) if cfg.loss_on_given_frames else ~d.given


def condition_inputs(latents: torch.Tensor, d: Draw, cfg: DrawConfig,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The conditioning node's two tensors for one clip: image latent [F,4,h,w] (zero on frames not given, plus
    N(0, noise_aug^2) on given ones) and mask [F,1,h,w] (1 on given frames); see atomo_core.conditioning_layout."""
    f, _, h, w = latents.shape
    if f != d.given.numel():
        raise ValueError(f"condition_inputs: the draw has {d.given.numel()} frames, the latents {f}")
    g = d.given.to(latents.device).view(f, 1, 1, 1)
    image = latents
    if cfg.noise_aug > 0:
        noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents)
        image = latents + cfg.noise_aug * noise
    image = torch.where(g, image, torch.zeros_like(image))
    mask = g.to(latents.dtype).expand(f, 1, h, w).contiguous()
    return image, mask
