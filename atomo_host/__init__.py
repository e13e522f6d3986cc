"""The host glue: how the method in `atomo_core` reaches a ComfyUI model, through ModelPatcher extension points.

May import ComfyUI; `atomo_core` never does; `nodes/` are thin faces over this package, and the trainer uses it
too. Errors name the input (`AtomoVideoError(field, message)`); the node layer names the node.
"""
