"""The project's own demo: a synthetic video world and the small models trained on it (issue 13).

Host-free: nothing in this package imports ComfyUI, so the world and the trainers run anywhere torch runs. The
exceptions are `python -m atomo_demo run` (`__main__`), which boots ComfyUI and hands over to the pack's
`atomo_host.demo_run`, and `claims`, which measures the paper's claims through the host glue the nodes use.
"""
