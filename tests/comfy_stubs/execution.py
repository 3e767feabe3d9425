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
  node's id;
- ``PromptExecutor.add_message``: each status message (``execution_start``,
  ``execution_cached`` with its ``nodes``, ``execution_success`` / ``execution_error`` /
  ``execution_interrupted``) gets a ``timestamp`` in ms (``int(time.time() * 1000)``), goes into
  the run's ``status_messages`` and to ``server.send_sync`` when the prompt has a ``client_id``
  (``execution_interrupted`` always: ``broadcast=True``); ``executing`` goes straight to
  ``send_sync`` when there is a client; ``execution_error`` and ``execution_interrupted`` carry
  ``executed`` (the nodes that ran). ``clock`` stands in for ``time.time`` (tests of old days);
- ``PromptQueue`` as ``execution.py``'s (``put``/``get``/``task_done``/``get_history``, a heap
  under an ``RLock``; ``task_done(item_id, history_result, status, process_item=None)``: the
  newest ComfyUI passes ``process_item`` to drop the sensitive sixth element);
- ``prompt_worker_once``: one turn of ``main.py``'s ``prompt_worker`` (``get``, execute,
  ``task_done`` with ``ExecutionStatus(status_str, completed, messages)``, then ``executing``
  with ``node: None``).

Node classes come from a ``{class_type: class}`` mapping passed in (ComfyUI's
``nodes.NODE_CLASS_MAPPINGS``, merged with every pack's).
"""

from __future__ import annotations

import copy
import heapq
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
    status_messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    success: bool = True

    @property
    def error(self) -> dict[str, Any] | None:
        return next((d for e, d in self.messages if e == "execution_error"), None)

    @property
    def interrupted(self) -> bool:
        return any(e == "execution_interrupted" for e, _ in self.messages)


def execute(
    prompt: Prompt,
    mappings: Mapping[str, type],
    outputs: list[str],
    prompt_id: str = "p",
    *,
    server: Any = None,
    extra_data: Mapping[str, Any] | None = None,
    cached: Mapping[str, tuple[Any, ...]] | None = None,
    clock: Callable[[], float] = time.time,
) -> Run:
    """Run a validated prompt. ``cached``: node outputs kept from an earlier run (ComfyUI's
    cache): those nodes do not run again and are listed in ``execution_cached``."""
    management = sys.modules["comfy.model_management"]
    management.interrupt_current_processing(False)  # nodes.interrupt_processing(False)
    extra_data = extra_data or {}
    client_id = extra_data.get("client_id")
    if server is not None:
        server.client_id = client_id
    run = Run()

    def add_message(event: str, data: dict[str, Any], broadcast: bool) -> None:
        data = {**data, "timestamp": int(clock() * 1000)}
        run.status_messages.append((event, data))
        run.messages.append((event, data))
        if server is not None and (client_id is not None or broadcast):
            server.send_sync(event, data, client_id)

    add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)
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
    cached = dict(cached or {})
    run.outputs.update({k: v for k, v in cached.items() if k in prompt})
    add_message(
        "execution_cached",
        {"nodes": [n for n in prompt if n in cached], "prompt_id": prompt_id},
        broadcast=False,
    )
    executed: list[str] = []
    for node_id in order:
        if node_id in cached:
            continue
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
        if server is not None and client_id is not None:
            server.last_node_id = node_id
            server.send_sync("executing", {"node": node_id, "prompt_id": prompt_id}, client_id)
        try:
            obj = class_def()
            run.outputs[node_id] = getattr(obj, class_def.FUNCTION)(**kwargs)
        except management.InterruptProcessingException:
            run.success = False
            add_message(
                "execution_interrupted",
                {
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": node["class_type"],
                    "executed": list(executed),
                },
                broadcast=True,
            )
            return run
        except Exception as ex:  # as ComfyUI: any failure of a node ends the run, reported
            run.success = False
            add_message(
                "execution_error",
                {
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": node["class_type"],
                    "executed": list(executed),
                    "exception_message": str(ex),
                    "exception_type": f"{type(ex).__module__}.{type(ex).__qualname__}",
                    "traceback": [],
                    "current_inputs": {},
                    "current_outputs": [],
                },
                broadcast=False,
            )
            return run
        executed.append(node_id)
    add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)
    if server is not None:
        server.last_node_id = None
    return run


# -- the queue -------------------------------------------------------------------------------

MAXIMUM_HISTORY_SIZE = 10000


class PromptQueue:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.task_counter = 0
        self.queue: list[tuple[Any, ...]] = []
        self.currently_running: dict[int, tuple[Any, ...]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.flags: dict[str, Any] = {}

    def put(self, item: tuple[Any, ...]) -> None:
        with self.mutex:
            heapq.heappush(self.queue, item)
            self.server.queue_updated()
            self.not_empty.notify()

    def get(self, timeout: float | None = None) -> tuple[tuple[Any, ...], int] | None:
        with self.not_empty:
            while len(self.queue) == 0:
                self.not_empty.wait(timeout=timeout)
                if timeout is not None and len(self.queue) == 0:
                    return None
            item = heapq.heappop(self.queue)
            i = self.task_counter
            self.currently_running[i] = copy.deepcopy(item)
            self.task_counter += 1
            self.server.queue_updated()
            return (item, i)

    class ExecutionStatus(NamedTuple):
        status_str: str
        completed: bool
        messages: list[tuple[str, dict[str, Any]]]

    def task_done(
        self,
        item_id: int,
        history_result: dict[str, Any],
        status: PromptQueue.ExecutionStatus | None,
        process_item: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None,
    ) -> None:
        with self.mutex:
            prompt = self.currently_running.pop(item_id)
            if len(self.history) > MAXIMUM_HISTORY_SIZE:
                self.history.pop(next(iter(self.history)))
            status_dict = copy.deepcopy(status._asdict()) if status is not None else None
            if process_item is not None:
                prompt = process_item(prompt)
            self.history[prompt[1]] = {"prompt": prompt, "outputs": {}, "status": status_dict}
            self.history[prompt[1]].update(history_result)
            self.server.queue_updated()

    def get_history(self, prompt_id: str) -> dict[str, Any]:
        with self.mutex:
            found = self.history.get(prompt_id)
            return {prompt_id: copy.deepcopy(found)} if found is not None else {}


def prompt_worker_once(
    server: Any,
    mappings: Mapping[str, type],
    timeout: float = 10.0,
    cached: Mapping[str, tuple[Any, ...]] | None = None,
    clock: Callable[[], float] = time.time,
) -> Run | None:
    """One turn of ``main.py``'s ``prompt_worker`` loop; None if nothing came in ``timeout``."""
    q = server.prompt_queue
    queue_item = q.get(timeout=timeout)
    if queue_item is None:
        return None
    item, item_id = queue_item
    prompt_id = item[1]
    server.last_prompt_id = prompt_id
    extra_data = dict(item[3])
    if len(item) > 5:
        extra_data.update(item[5])
    run = execute(
        item[2],
        mappings,
        item[4],
        prompt_id,
        server=server,
        extra_data=extra_data,
        cached=cached,
        clock=clock,
    )
    status = PromptQueue.ExecutionStatus(
        status_str="success" if run.success else "error",
        completed=run.success,
        messages=run.status_messages,
    )
    if len(item) > 5:
        q.task_done(item_id, {"outputs": {}, "meta": {}}, status=status,
                    process_item=lambda p: p[:5] + p[6:])  # fmt: skip
    else:
        q.task_done(item_id, {"outputs": {}, "meta": {}}, status=status)
    if server.client_id is not None:
        server.send_sync("executing", {"node": None, "prompt_id": prompt_id}, server.client_id)
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
