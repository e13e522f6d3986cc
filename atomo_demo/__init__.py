"""The project's own demo: a synthetic video world and the small models trained on it (issue 13).

Host-free: nothing in this package imports ComfyUI, so the world and the trainers run anywhere torch runs.
"""
