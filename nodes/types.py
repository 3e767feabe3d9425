"""Socket types shared by our nodes."""

from __future__ import annotations


class AnyType(str):
    """A socket type that matches every input.

    ComfyUI checks a linked input with ``not received_type != input_type`` before comparing
    type names (``comfy_execution/validation.py``, ``validate_node_input``), so a type whose
    ``!=`` is always False links into any input, a loader's file-name combo included. The page
    treats ``"*"`` as the wildcard type.
    """

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


ANY = AnyType("*")
"""Output type of nodes that produce a model name for a loader's model input."""
