"""AtomoVideo core: plain PyTorch pieces of the method (arXiv 2403.01800).

Nothing in this package imports ComfyUI; `nodes/` adapts it to the host.
"""
