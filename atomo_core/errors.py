"""Errors users read: each names where the problem is and what to do about it."""


class AtomoVideoError(ValueError):
    """A problem with user input. `str()` is the message shown in ComfyUI."""


class WeightFormatError(AtomoVideoError):
    """A weight file is not one of the formats the pack knows, or does not fit the model."""


def input_error(node: str, input_name: str, message: str) -> AtomoVideoError:
    """Error for a node input, phrased the same way everywhere: `Node, input 'x': what, what to do`."""
    return AtomoVideoError(f"{node}, input '{input_name}': {message}")
