"""Seeing ComfyUI's runs: which prompt ran, when, how it ended (receives ComfyUI's prompt queue
as an argument; never imports ComfyUI).

ComfyUI (0.3.64 and newer, ``main.py``'s ``prompt_worker``) takes each prompt from
``PromptServer.instance.prompt_queue`` with ``get(timeout)``, which returns ``(item, item_id)``
(``item`` = ``(number, prompt_id, prompt, extra_data, outputs_to_execute[, sensitive])``), runs
it, then calls ``task_done(item_id, history_result, status=ExecutionStatus(status_str,
completed, messages), [process_item])``. ``messages`` are the executor's ``status_messages``:
``(event, data)`` pairs for ``execution_start``, ``execution_cached`` (``nodes``), and one of
``execution_success``, ``execution_error`` (``node_id``, ``node_type``, ``executed``,
``exception_message``...) or ``execution_interrupted``, each data with a ``timestamp`` in ms.

Why the queue and not ``send_sync``: ComfyUI sends those events to the page only when the
prompt came with a ``client_id`` (``add_message``), so scripts' runs would be missed; the queue
sees every run, with the same messages.

`install_run_hooks` wraps ``get`` and ``task_done`` on the queue object once (chained to what
was there, so other packs' wrappers keep working; installing again finds ours); the wrappers
only build a small `RunReport` and hand it to the listener, and never let an error of ours
reach ComfyUI's worker.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("model_shelf.runs")

RUN_HOOK_MARK = "__model_shelf_run_hook__"


@dataclass
class RunReport:
    """One finished ComfyUI run, as the queue saw it."""

    prompt_id: str
    prompt: dict[str, Any]
    """The API prompt that ran (``{node_id: {"class_type", "inputs"}}``)."""
    outputs: list[str]
    """The output nodes it was asked to run."""
    extra_data: dict[str, Any]
    started_at: float
    ended_at: float
    status: str
    """``success``, ``error`` or ``interrupted``."""
    cached: list[str] = field(default_factory=list)
    executed: list[str] | None = None
    """Nodes that ran before the run stopped (error and interrupt only)."""
    error_node_id: str | None = None
    error_node_type: str | None = None
    error_message: str | None = None

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended_at - self.started_at)


class RunListener(Protocol):
    def run_started(self, prompt_id: str, when: float) -> None: ...

    def run_finished(self, report: RunReport) -> None: ...


class RunHook:
    """Where our queue wrappers send what they see; ``listener`` None: pass-through."""

    def __init__(self) -> None:
        self.listener: RunListener | None = None


def _find_hook(func: object) -> RunHook | None:
    for _ in range(32):
        hook = getattr(func, RUN_HOOK_MARK, None)
        if isinstance(hook, RunHook):
            return hook
        func = getattr(func, "__wrapped__", None)
        if func is None:
            return None
    return None


def install_run_hooks(prompt_queue: Any) -> RunHook | None:
    """Wrap ``prompt_queue.get`` and ``task_done`` once; returns the hook to attach a listener
    to, or None if the queue does not look like ComfyUI's (then nothing is wrapped).

    Args:
        prompt_queue: ComfyUI's ``PromptServer.instance.prompt_queue`` (or a stand-in).
    """
    get = getattr(prompt_queue, "get", None)
    task_done = getattr(prompt_queue, "task_done", None)
    if not callable(get) or not callable(task_done):
        return None
    hook = _find_hook(task_done)
    if hook is not None:
        return hook
    hook = RunHook()
    prompt_queue.get = _wrap_get(get, hook)
    prompt_queue.task_done = _wrap_task_done(prompt_queue, task_done, hook)
    return hook


def _wrap_get(previous: Callable[..., Any], hook: RunHook) -> Callable[..., Any]:
    @functools.wraps(previous)
    def get(*args: Any, **kwargs: Any) -> Any:
        result = previous(*args, **kwargs)
        listener = hook.listener
        if listener is not None and result is not None:
            try:
                listener.run_started(str(result[0][1]), time.time())
            except Exception:  # never break ComfyUI's worker
                log.exception("Model Shelf: noting a run's start failed")
        return result

    setattr(get, RUN_HOOK_MARK, hook)
    return get


def _wrap_task_done(queue: Any, previous: Callable[..., Any], hook: RunHook) -> Callable[..., Any]:
    @functools.wraps(previous)
    def task_done(item_id: Any, history_result: Any, status: Any = None, *args: Any, **kw: Any):
        listener = hook.listener
        item = None
        if listener is not None:
            try:
                item = queue.currently_running.get(item_id)
            except Exception:
                item = None
        result = previous(item_id, history_result, status, *args, **kw)
        if listener is not None and item is not None:
            try:
                listener.run_finished(report_of(item, status, time.time()))
            except Exception:  # never break ComfyUI's worker
                log.exception("Model Shelf: noting a finished run failed")
        return result

    setattr(task_done, RUN_HOOK_MARK, hook)
    return task_done


def _messages(status: Any) -> list[tuple[str, Mapping[str, Any]]]:
    raw = getattr(status, "messages", None)
    if raw is None and isinstance(status, Mapping):
        raw = status.get("messages")
    found = []
    for message in raw or ():
        if (
            isinstance(message, (list, tuple))
            and len(message) == 2
            and isinstance(message[0], str)
            and isinstance(message[1], Mapping)
        ):
            found.append((message[0], message[1]))
    return found


def report_of(item: Any, status: Any, now: float) -> RunReport:
    """A `RunReport` from a queue item and the ``status`` given to ``task_done``."""
    prompt = item[2] if isinstance(item[2], dict) else {}
    outputs = [str(o) for o in (item[4] if len(item) > 4 and item[4] else [])]
    extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
    messages = _messages(status)
    stamps = [m["timestamp"] / 1000 for _, m in messages if isinstance(m.get("timestamp"), int)]
    started = next(
        (m["timestamp"] / 1000 for e, m in messages if e == "execution_start" and "timestamp" in m),
        min(stamps, default=now),
    )
    report = RunReport(
        prompt_id=str(item[1]),
        prompt=prompt,
        outputs=outputs,
        extra_data=extra,
        started_at=started,
        ended_at=max(stamps, default=now),
        status="success",
    )
    for event, data in messages:
        if event == "execution_cached":
            report.cached = [str(n) for n in data.get("nodes") or ()]
        elif event in ("execution_error", "execution_interrupted"):
            report.status = "error" if event == "execution_error" else "interrupted"
            report.executed = [str(n) for n in data.get("executed") or ()]
            report.error_node_id = str(data.get("node_id")) if data.get("node_id") else None
            report.error_node_type = data.get("node_type")
            message = data.get("exception_message")
            report.error_message = str(message)[:500] if message else None
    if report.status == "success" and getattr(status, "status_str", "success") == "error":
        report.status = "error"
    return report
