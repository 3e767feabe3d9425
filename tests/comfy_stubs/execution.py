"""Stand-in for how ComfyUI checks and runs a prompt (written for our tests, not ComfyUI's code).

Mirrors ComfyUI 0.3.64 (commit 637221995f7424a561bd825de3e61ea117dfe1e3):

- ``validate_node_input`` as in ``comfy_execution/validation.py``: ``not received != input``
  first (the "any" type trick), then the comma-separated type sets must overlap;
- ``validate_inputs`` as in ``execution.py`` for classic nodes, without ``VALIDATE_INPUTS``:
  ``required_input_missing``; a linked input (``[id, slot]``) is checked by the linked node's
  ``RETURN_TYPES[slot]`` (``return_type_mismatch``) and the linked node is validated too; a
  value is converted for INT/FLOAT/STRING/BOOLEAN, checked against min/max, and a combo value
  (the input type is a list) must be in the list (``value_not_in_list``);
- ``validate_prompt``: unknown class types, ``prompt_no_outputs``, per-output validation and
  ``node_errors`` (only nodes with errors of their own);
- ``PromptExecutor.execute`` reduced to what our tests need: the interrupt flag is reset first
  (``nodes.interrupt_processing(False)``), nodes feeding the output nodes run in dependency
  order on the calling thread (ComfyUI's worker thread), each with its inputs' values; a
  node's exception stops the run as ``execution_error`` (message, type, node id and class) and
  ``InterruptProcessingException`` as ``execution_interrupted``; no caching, no lists;
- ``hijack_progress`` as ``main.py``'s: the ProgressBar hook raises on cancel
  (``throw_exception_if_processing_interrupted``), then sends ``progress`` to the page with the
  node's id.

Node classes come from a ``{class_type: class}`` mapping passed in (ComfyUI's
``nodes.NODE_CLASS_MAPPINGS``, merged with every pack's).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Prompt = dict[str, dict[str, Any]]


def validate_node_input(received_type: Any, input_type: Any, strict: bool = False) -> bool:
    if not received_type != input_type:  # noqa: SIM202 -- the "any" type trick relies on __ne__
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received_types = {t.strip() for t in received_type.split(",")}
    input_types = {t.strip() for t in input_type.split(",")}
    if strict:
        return received_types.issubset(input_types)
    return len(received_types.intersection(input_types)) > 0


def get_input_info(class_def: type, input_name: str) -> tuple[Any, str | None, dict[str, Any]]:
    valid_inputs = class_def.INPUT_TYPES()
    for category in ("required", "optional", "hidden"):
        if input_name in valid_inputs.get(category, {}):
            info = valid_inputs[category][input_name]
            extra = info[1] if len(info) > 1 else {}
            return info[0], category, extra
    return None, None, {}


def validate_inputs(
    prompt: Prompt,
    item: str,
    validated: dict[str, tuple[bool, list[dict[str, Any]], str]],
    mappings: Mapping[str, type],
) -> tuple[bool, list[dict[str, Any]], str]:
    unique_id = item
    if unique_id in validated:
        return validated[unique_id]
    inputs = prompt[unique_id]["inputs"]
    obj_class = mappings[prompt[unique_id]["class_type"]]
    class_inputs = obj_class.INPUT_TYPES()
    valid_inputs = set(class_inputs.get("required", {})).union(class_inputs.get("optional", {}))
    errors: list[dict[str, Any]] = []
    valid = True
    for x in valid_inputs:
        input_type, input_category, extra_info = get_input_info(obj_class, x)
        if x not in inputs:
            if input_category == "required":
                errors.append(
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": f"{x}",
                        "extra_info": {"input_name": x},
                    }
                )
            continue
        val = inputs[x]
        if isinstance(val, list):
            if len(val) != 2:
                errors.append(
                    {
                        "type": "bad_linked_input",
                        "message": "Bad linked input, must be a length-2 list of [node_id, "
                        "slot_index]",
                        "details": f"{x}",
                        "extra_info": {"input_name": x},
                    }
                )
                continue
            o_id = val[0]
            received_type = mappings[prompt[o_id]["class_type"]].RETURN_TYPES[val[1]]
            if not validate_node_input(received_type, input_type):
                errors.append(
                    {
                        "type": "return_type_mismatch",
                        "message": "Return type mismatch between linked nodes",
                        "details": f"{x}, received_type({received_type}) mismatch "
                        f"input_type({input_type})",
                        "extra_info": {"input_name": x, "linked_node": val},
                    }
                )
                continue
            r = validate_inputs(prompt, o_id, validated, mappings)
            if r[0] is False:
                valid = False
            continue
        try:
            if input_type == "INT":
                val = int(val)
            if input_type == "FLOAT":
                val = float(val)
            if input_type == "STRING":
                val = str(val)
            if input_type == "BOOLEAN":
                val = bool(val)
            inputs[x] = val
        except (TypeError, ValueError) as ex:
            errors.append(
                {
                    "type": "invalid_input_type",
                    "message": f"Failed to convert an input value to a {input_type} value",
                    "details": f"{x}, {val}, {ex}",
                    "extra_info": {"input_name": x},
                }
            )
            continue
        if "min" in extra_info and val < extra_info["min"]:
            errors.append({"type": "value_smaller_than_min", "details": f"{x}"})
            continue
        if "max" in extra_info and val > extra_info["max"]:
            errors.append({"type": "value_bigger_than_max", "details": f"{x}"})
            continue
        if isinstance(input_type, list) and val not in input_type:
            list_info = (
                f"(list of length {len(input_type)})" if len(input_type) > 20 else str(input_type)
            )
            errors.append(
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": f"{x}: '{val}' not in {list_info}",
                    "extra_info": {"input_name": x, "received_value": val},
                }
            )
            continue
    ret = (False, errors, unique_id) if errors or valid is not True else (True, [], unique_id)
    validated[unique_id] = ret
    return ret


@dataclass
class Validation:
    valid: bool
    error: dict[str, Any] | None
    outputs: list[str]
    node_errors: dict[str, dict[str, Any]]


def validate_prompt(prompt: Prompt, mappings: Mapping[str, type]) -> Validation:
    outputs = set()
    for x, node in prompt.items():
        class_ = mappings.get(node.get("class_type", ""))
        if class_ is None:
            error = {
                "type": "invalid_prompt",
                "message": f"Cannot execute because node {node.get('class_type')} does not exist.",
                "details": f"Node ID '#{x}'",
            }
            return Validation(False, error, [], {})
        if getattr(class_, "OUTPUT_NODE", False) is True:
            outputs.add(x)
    if not outputs:
        return Validation(False, {"type": "prompt_no_outputs"}, [], {})
    good_outputs = []
    node_errors: dict[str, dict[str, Any]] = {}
    validated: dict[str, tuple[bool, list[dict[str, Any]], str]] = {}
    for o in sorted(outputs):
        valid, _reasons, _ = validate_inputs(prompt, o, validated, mappings)
        if valid is True:
            good_outputs.append(o)
            continue
        for node_id, (ok, node_reasons, _) in validated.items():
            if ok is not True and node_reasons:
                entry = node_errors.setdefault(
                    node_id,
                    {
                        "errors": node_reasons,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(o)
    if not good_outputs:
        return Validation(False, {"type": "prompt_outputs_failed_validation"}, [], node_errors)
    return Validation(True, None, good_outputs, node_errors)


# -- running ---------------------------------------------------------------------------------


@dataclass
class Run:
    """What a run sent to the page (``messages``) and what each node returned."""

    outputs: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def error(self) -> dict[str, Any] | None:
        return next((d for e, d in self.messages if e == "execution_error"), None)

    @property
    def interrupted(self) -> bool:
        return any(e == "execution_interrupted" for e, _ in self.messages)


def execute(
    prompt: Prompt, mappings: Mapping[str, type], outputs: list[str], prompt_id: str = "p"
) -> Run:
    management = sys.modules["comfy.model_management"]
    management.interrupt_current_processing(False)  # nodes.interrupt_processing(False)
    run = Run()
    order: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in order:
            return
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list) and len(value) == 2:
                visit(value[0])
        order.append(node_id)

    for output in outputs:
        visit(output)
    for node_id in order:
        node = prompt[node_id]
        class_def = mappings[node["class_type"]]
        kwargs = {
            name: run.outputs[value[0]][value[1]]
            if isinstance(value, list) and len(value) == 2
            else value
            for name, value in node["inputs"].items()
            if get_input_info(class_def, name)[1] is not None
        }
        run.messages.append(("executing", {"node": node_id, "prompt_id": prompt_id}))
        try:
            obj = class_def()
            run.outputs[node_id] = getattr(obj, class_def.FUNCTION)(**kwargs)
        except management.InterruptProcessingException:
            run.messages.append(
                ("execution_interrupted", {"prompt_id": prompt_id, "node_id": node_id})
            )
            return run
        except Exception as ex:  # as ComfyUI: any failure of a node ends the run, reported
            run.messages.append(
                (
                    "execution_error",
                    {
                        "prompt_id": prompt_id,
                        "node_id": node_id,
                        "node_type": node["class_type"],
                        "exception_message": str(ex),
                        "exception_type": f"{type(ex).__module__}.{type(ex).__qualname__}",
                    },
                )
            )
            return run
    run.messages.append(("execution_success", {"prompt_id": prompt_id}))
    return run


def hijack_progress(server: Any) -> None:
    """``main.py``'s ProgressBar hook: cancel check, then ``progress`` to the page."""
    utils = sys.modules["comfy.utils"]
    management = sys.modules["comfy.model_management"]

    def hook(value: int, total: int, preview_image: Any, prompt_id: Any = None, node_id=None):
        management.throw_exception_if_processing_interrupted()
        progress = {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id}
        server.send_sync("progress", progress, getattr(server, "client_id", None))

    utils.set_progress_bar_global_hook(hook)
