"""The ComfyUI face of the pack: V3 schema nodes and the glue that patches models through host APIs.

Every module here may import ComfyUI; `atomo_core` never does.
"""
from .loader_node import AtomoVideoLoader
from .metrics_node import AtomoVideoMetrics
from .sampler_node import AtomoVideoModelSampling, AtomoVideoSampler

NODE_LIST = [
    AtomoVideoLoader,
    AtomoVideoMetrics,
    AtomoVideoSampler,
    AtomoVideoModelSampling,
]
