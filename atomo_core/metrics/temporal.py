"""CLIP similarities: every frame to the input (image consistency) and adjacent frames (temporal consistency).

Takes embeddings computed elsewhere (or a callable that computes them), so this stays free of any host or
model library; the node feeds it ComfyUI CLIP vision `image_embeds`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Embedder = Callable[[np.ndarray], np.ndarray]  # images [N, H, W, 3] in [0, 1] -> embeddings [N, D]


def _unit(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def clip_similarities(frame_embeds: np.ndarray, image_embed: np.ndarray) -> dict[str, list[float]]:
    """Cosine similarity of each frame embedding [F, D] to the image embedding [D] and to the next frame."""
    f = _unit(frame_embeds)
    i = _unit(np.asarray(image_embed).reshape(-1))
    return {
        "clip_to_input": (f @ i).tolist(),
        "clip_adjacent": np.sum(f[:-1] * f[1:], axis=-1).tolist(),
    }


def embed_all(embed: Embedder, video: np.ndarray, image: np.ndarray, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of all frames (in chunks, to bound memory) and of the input image."""
    frames = [np.asarray(embed(video[s:s + chunk])) for s in range(0, len(video), chunk)]
    return np.concatenate(frames, axis=0), np.asarray(embed(image[None]))[0]
