"""Errors users read: each names the input (or config key) the problem is in and what to do about it.

The core knows fields, never nodes: `AtomoVideoError(field, message)`. Whoever runs the code names the node once
(`at`), so the same rule reads right in every node that applies it and in the trainer's config checks.
"""
from __future__ import annotations

from contextlib import contextmanager


class AtomoVideoError(ValueError):
    """A problem with user input. `str()` is the message shown: `Node, input 'field': message`."""

    def __init__(self, field: str | None, message: str, node: str | None = None):
        self.field, self.message, self.node = field, message, node
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"input '{self.field}': " if self.field else ""
        return (f"{self.node}, " if self.node else "") + where + self.message

    def _copy(self, field: str | None, node: str | None, message: str | None = None) -> "AtomoVideoError":
        error = AtomoVideoError.__new__(type(self))
        AtomoVideoError.__init__(error, field, self.message if message is None else message, node)
        return error.with_traceback(self.__traceback__)

    def at(self, node: str) -> "AtomoVideoError":
        """This error as one of `node` (unchanged when it already names one)."""
        return self if self.node else self._copy(self.field, node)

    def in_field(self, field: str, hint: str = "") -> "AtomoVideoError":
        """This error as one of input `field` (unchanged when it already names one); `hint` is appended."""
        if self.field:
            return self
        return self._copy(field, self.node, f"{self.message} ({hint})" if hint else None)


class WeightFormatError(AtomoVideoError):
    """A weight file is not one of the formats the pack knows, or does not fit the model; the caller names the
    input that chose the file."""

    def __init__(self, message: str, field: str | None = None, node: str | None = None):
        super().__init__(field, message, node)

    def _copy(self, field, node, message=None):
        error = WeightFormatError(self.message if message is None else message, field, node)
        return error.with_traceback(self.__traceback__)


@contextmanager
def in_field(field: str, hint: str = ""):
    """Errors without a field raised inside are errors of input `field`."""
    try:
        yield
    except AtomoVideoError as e:
        raise e.in_field(field, hint) from None
