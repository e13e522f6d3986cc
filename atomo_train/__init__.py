"""The AtomoVideo trainer: from an SD1.5 checkpoint and a folder of videos to an AtomoVideo weight file.

Host-dependent like `nodes/`: run it as `python -m atomo_train` / `accelerate launch -m atomo_train` from the
pack's folder. `__main__` boots ComfyUI as a library and loads the pack the way ComfyUI does, so the trainer
inflates the UNet with the very modules the loader node uses. Nothing is imported here, so that importing this
package as a top-level module (what `-m` does) stays free of the host.
"""
