"""AtomoVideo trainer (issue 12): `python -m atomo_train` / `accelerate launch -m atomo_train`, from the pack's
folder.

The data side (`data/`, `draws.py`, `errors.py`) is host-free; the loop uses ComfyUI as a library: `__main__`
boots ComfyUI and loads the pack the way ComfyUI does, so the trainer inflates the UNet with the very modules the
loader node uses. Nothing is imported here, so importing this package as a top-level module (what `-m` does)
stays free of the host.
"""
