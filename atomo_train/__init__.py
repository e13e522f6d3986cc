"""AtomoVideo trainer (issue 12): `python -m atomo_train` / `accelerate launch -m atomo_train`.

The data side (`data/`, `draws.py`, `errors.py`) is host-free; the loop uses ComfyUI as a library.
"""
