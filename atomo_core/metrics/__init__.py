"""AIGCBench-style metrics of an image-to-video result, as AtomoVideo was evaluated (see README, Metrics).

`check_inputs` + `evaluate` give a JSON-able report; `plots.plot_report` draws it. Host-free: the node and the
command (`python -m atomo_core.metrics`) both call these.
"""
from .report import check_inputs, evaluate, fit_image, summary_text, to_json

__all__ = ["check_inputs", "evaluate", "fit_image", "summary_text", "to_json"]
