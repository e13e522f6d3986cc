"""The one place where a node's name joins an error: the core and the glue name only the input."""
from __future__ import annotations

import functools

from comfy_api.latest import io

from ..atomo_core.errors import AtomoVideoError
from ..atomo_host.input_checks import check_node_inputs


class AtomoNode(io.ComfyNode):
    """Base of the pack's nodes: the inputs pass `check_node_inputs` (finite numbers and tensors) before `execute`
    runs, and an `AtomoVideoError` leaving either names this node (its id)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        execute = cls.__dict__.get("execute")
        if execute is None or getattr(execute.__func__, "_names_node", False):
            return
        run = execute.__func__

        @functools.wraps(run)
        def named(klass, *args, **inputs):
            schema = klass.define_schema()
            try:
                check_node_inputs(schema, inputs)
                return run(klass, *args, **inputs)
            except AtomoVideoError as e:
                raise e.at(schema.node_id) from e.__cause__

        named._names_node = True
        cls.execute = classmethod(named)
