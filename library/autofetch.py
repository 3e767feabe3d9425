"""Auto-fetch: make a submitted prompt's missing models arrive before its loaders run.

ComfyUI hands every ``POST /prompt`` body to on-prompt handlers before it validates the prompt
(``server.py``, ``trigger_on_prompt``), on its event loop: a handler must be quick and must
return the body. So the work is split (the ComfyUI side calls these three in its handler):

1. `plan`: for each model input of the API prompt (see `workflows.prompt_inputs`) decide:

   - **present**: ComfyUI lists the value as it is; nothing to do;
   - **resolved**: the value is an alias, a bare file name of a model in a subfolder, a hash,
     or a file the workflow's metadata describes by a sha256 the library has under another
     name: the input is rewritten to the listed name, so validation passes;
   - **fetch**: the workflow's ``models`` metadata gives a URL for it, or the library has a
     record of it (by name or alias) whose file is gone and which has a source: download it;
   - **unavailable**: a model file name nobody can provide.

   Values that are not model file names and that nothing describes (``pixel_space``, a
   pack's own choices) are left for ComfyUI to judge.
2. `execute`: queue the downloads on the library's queue, one task per distinct model however
   many inputs name it (and the queue's lease makes two processes asking for one model share
   one download).
3. `rewrite`: link each input to be fetched to an injected node (ComfyUI's node class of
   ``await_class``) that waits for its task and returns the model's listed name; an
   unavailable input is linked to one that fails with a message naming the file, its folder
   and how to supply it (instead of ComfyUI's bare "Value not in list"). Validation checks a
   linked input by type only, and the waiting node's output type matches any input.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from .alternatives import Alternative, alternatives_text, find_alternatives
from .command import cli_command
from .downloads.http import redact_url
from .downloads.tasks import TaskOrigin
from .errors import ShelfError
from .records import ModelRecord
from .workflows import (
    ModelEntry,
    ModelInput,
    http_sources,
    is_model_filename,
    library_model,
    present,
    prompt_inputs,
    read_document,
)

if TYPE_CHECKING:
    from .comfy_paths import FolderPathsBridge
    from .shelf import Shelf

log = logging.getLogger("model_shelf.autofetch")


class ModelResolver(Protocol):
    """What ComfyUI would accept as a model input's value (see `FolderPathsResolver`)."""

    def listed(self, model_type: str, name: str) -> bool:
        """True if ComfyUI lists ``name`` in ``model_type`` (validation would pass)."""
        ...

    def resolve_name(self, model_type: str, value: str) -> str | None:
        """The listed library name an alias, bare file name or hash means, or None."""
        ...


class FolderPathsResolver:
    """A `ModelResolver` over ComfyUI's ``folder_paths`` (given, never imported) and our bridge.

    Listings are read once per type per resolver: make one per prompt.
    """

    def __init__(self, folder_paths: ModuleType, bridge: FolderPathsBridge | None) -> None:
        self.folder_paths = folder_paths
        self.bridge = bridge
        self._listings: dict[str, frozenset[str]] = {}

    def listed(self, model_type: str, name: str) -> bool:
        names = self._listings.get(model_type)
        if names is None:
            try:
                names = frozenset(self.folder_paths.get_filename_list(model_type))
            except (KeyError, OSError):  # a type this ComfyUI does not know; a vanished folder
                names = frozenset()
            self._listings[model_type] = names
        return name in names or name.replace("/", os.sep) in names

    def resolve_name(self, model_type: str, value: str) -> str | None:
        return self.bridge.resolve_name(model_type, value) if self.bridge is not None else None


class LibraryResolver:
    """A `ModelResolver` from the library alone, for scripts and servers without ComfyUI: a
    name is listed when the library has a model of that name in place."""

    def __init__(self, shelf: Shelf) -> None:
        self.shelf = shelf

    def listed(self, model_type: str, name: str) -> bool:
        record = self.shelf.index.get_at(model_type, name.replace("\\", "/"))
        return record is not None and present(self.shelf, record)

    def resolve_name(self, model_type: str, value: str) -> str | None:
        record = library_model(self.shelf, value, model_type)
        return record.name if record is not None and present(self.shelf, record) else None


class Availability(str, Enum):
    PRESENT = "present"
    RESOLVED = "resolved"
    FETCH = "fetch"
    UNAVAILABLE = "unavailable"


@dataclass
class Fetch:
    """One download the plan needs, shared by every input naming the same model."""

    model_type: str
    requested: str
    """The value the (first) input gave."""
    source: str | None = None
    """Where from (metadata URL or the record's source); None for a repair."""
    name: str | None = None
    """The name to save it under."""
    sha256: str | None = None
    repair_id: str | None = None
    """A record whose file is gone: fetched again through the repairer (keeps its record)."""
    inputs: list[ModelInput] = field(default_factory=list)
    task_id: str | None = None
    """Set by `execute`."""
    error: str | None = None
    """Set by `execute` when the download could not be queued."""


@dataclass
class PlannedInput:
    input: ModelInput
    availability: Availability
    name: str | None = None
    """The listed name (present, resolved)."""
    fetch: Fetch | None = None
    reason: str | None = None
    """Why it is unavailable, for the person who ran the workflow."""
    alternatives: list[Alternative] = field(default_factory=list)
    """Unavailable: the closest library models that could stand in (issue #14)."""


@dataclass
class FetchPlan:
    inputs: list[PlannedInput] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)

    @property
    def changes_prompt(self) -> bool:
        return any(p.availability is not Availability.PRESENT for p in self.inputs)


def unavailable_message(value: str, model_type: str) -> str:
    """What a person reads when a workflow's model cannot be found or fetched."""
    return (
        f"Model '{value}' ({model_type}) is not in the library and the workflow says nowhere to "
        f"get it: add it with '{cli_command()} add <URL> --type {model_type}' (or the "
        f"Model Shelf sidebar), put the file in a {model_type} folder, or add a models entry "
        "with a url for it to the workflow"
    )


def plan(body: Mapping[str, Any], shelf: Shelf, resolver: ModelResolver) -> FetchPlan:
    """Decide, for each model input of a ``/prompt`` body, how it gets its model.

    Args:
        body (`Mapping`): the ``/prompt`` body (``prompt``, ``extra_data.extra_pnginfo.
            workflow`` for the metadata), or a bare API prompt.
        shelf (`Shelf`): the library.
        resolver (`ModelResolver`): what ComfyUI lists.

    Returns:
        `FetchPlan`: nothing is changed yet (see `execute` and `rewrite`).

    Raises:
        `InvalidWorkflowError`: the body holds no prompt.
    """
    document = read_document(dict(body))
    result = FetchPlan()
    fetches: dict[tuple[str, str], Fetch] = {}
    for model_input in prompt_inputs(document.prompt or {}, document.entries):
        if model_input.model_type is None:
            continue  # a generic input nothing describes: ComfyUI's to judge
        planned = _plan_one(model_input, model_input.model_type, shelf, resolver)
        if planned is None:
            continue
        if planned.fetch is not None:
            fetch = planned.fetch
            key = (fetch.model_type, fetch.repair_id or fetch.source or "")
            shared = fetches.setdefault(key, fetch)
            shared.inputs.append(model_input)
            planned.fetch = shared
        result.inputs.append(planned)
    result.fetches = list(fetches.values())
    for planned in result.inputs:
        if planned.availability is Availability.UNAVAILABLE:
            _suggest(planned, shelf, result)
    return result


def _suggest(planned: PlannedInput, shelf: Shelf, fetch_plan: FetchPlan) -> None:
    """Name the closest library models in an unavailable input's reason (issue #14)."""
    model_type = planned.input.model_type
    if model_type is None:
        return
    context = [
        record
        for other in fetch_plan.inputs
        if other.name is not None and other.input.model_type is not None
        for record in [shelf.index.get_at(other.input.model_type, other.name)]
        if record is not None
    ]
    try:
        known = next(iter(shelf.index.by_name(planned.input.value, model_type)), None)
        planned.alternatives = find_alternatives(
            planned.input.value, model_type, shelf.index.list(model_type), known=known,
            context=context,
        )  # fmt: skip
    except ShelfError as exc:
        log.warning("Model Shelf: no alternatives for %s: %s", planned.input.value, exc)
        return
    if planned.reason is not None:
        planned.reason += alternatives_text(planned.alternatives)


def _plan_one(
    model_input: ModelInput, model_type: str, shelf: Shelf, resolver: ModelResolver
) -> PlannedInput | None:
    value = model_input.value
    if resolver.listed(model_type, value):
        return PlannedInput(model_input, Availability.PRESENT, name=value)
    resolved = resolver.resolve_name(model_type, value)
    if resolved and resolved != value and resolver.listed(model_type, resolved):
        return PlannedInput(model_input, Availability.RESOLVED, name=resolved)
    entry = model_input.entry
    if entry is None and not is_model_filename(value):
        return None  # not a file name, nothing describes it: leave it to ComfyUI
    if entry is not None:
        same = _by_entry_hash(shelf, entry, model_type)
        if same is not None and resolver.listed(model_type, same.name):
            return PlannedInput(model_input, Availability.RESOLVED, name=same.name)
        name = value.replace("\\", "/") if is_model_filename(value) else entry.name
        fetch = Fetch(model_type, value, source=entry.url, name=name, sha256=entry.sha256)
        return PlannedInput(model_input, Availability.FETCH, fetch=fetch)
    record = library_model(shelf, value, model_type)
    if record is not None and not present(shelf, record) and http_sources(record):
        fetch = Fetch(model_type, value, name=record.name, repair_id=record.id)
        return PlannedInput(model_input, Availability.FETCH, fetch=fetch)
    return PlannedInput(
        model_input, Availability.UNAVAILABLE, reason=unavailable_message(value, model_type)
    )


def _by_entry_hash(shelf: Shelf, entry: ModelEntry, model_type: str) -> ModelRecord | None:
    sha = entry.sha256
    if sha is None:
        return None
    try:
        records = shelf.index.by_hash(sha)
    except ShelfError as exc:
        log.warning("Model Shelf: cannot look up %s: %s", sha, exc)
        return None
    for record in records:
        if record.type == model_type and record.sha256 == sha and present(shelf, record):
            return record
    return None


def execute(fetch_plan: FetchPlan, shelf: Shelf) -> FetchPlan:
    """Queue the plan's downloads (quick: one SQLite transaction each, no network); a paused
    one is resumed (somebody wants the model again).

    A download that cannot be queued (a refused URL, a record that cannot be repaired) makes
    its inputs unavailable, with the reason.

    Returns:
        `FetchPlan`: the same plan, with task ids (or errors) filled in.
    """
    for fetch in fetch_plan.fetches:
        try:
            if fetch.repair_id is not None:
                result = shelf.start_repairs([fetch.repair_id])[0]
                if result.ok and result.task_id is not None:
                    fetch.task_id = shelf.fetcher.want(shelf.downloads.get(result.task_id)).id
                else:
                    fetch.error = result.detail
            else:
                assert fetch.source is not None
                task = shelf.fetcher.request(
                    fetch.source, fetch.model_type, fetch.name, fetch.sha256, TaskOrigin.WORKFLOW
                )
                fetch.task_id = task.id
        except ShelfError as exc:
            fetch.error = f"[{exc.code}] {exc.message}"
        if fetch.error is not None:
            log.warning(
                "Model Shelf: cannot fetch %s (%s): %s",
                fetch.requested,
                fetch.model_type,
                fetch.error,
            )
    for planned in fetch_plan.inputs:
        fetch = planned.fetch
        if fetch is not None and fetch.error is not None:
            planned.availability = Availability.UNAVAILABLE
            where = redact_url(fetch.source) if fetch.source else "its recorded source"
            planned.reason = (
                f"Model '{planned.input.value}' ({fetch.model_type}) is not in the library and "
                f"cannot be fetched from {where}: {fetch.error}"
            )
            _suggest(planned, shelf, fetch_plan)
    return fetch_plan


def loader_label(prompt: Mapping[str, Any], node_id: str) -> str:
    """The loader as the person sees it on the canvas: its title (the page sends it as
    ``_meta.title``) or class, and its node id, e.g. ``Load Checkpoint (node 4)``."""
    node = prompt.get(node_id)
    node = node if isinstance(node, Mapping) else {}
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    if not isinstance(title, str) or not title.strip():
        title = node.get("class_type") if isinstance(node.get("class_type"), str) else "A node"
    return f"{title.strip()} (node {node_id})"


def rewrite(
    body: Mapping[str, Any],
    fetch_plan: FetchPlan,
    await_class: str,
    missing_class: str | None = None,
) -> dict[str, Any]:
    """The body with the plan applied (the given body is left alone).

    Resolved inputs get the listed name. Inputs to fetch are linked to one injected
    ``await_class`` node per download (inputs ``task_id``, ``model_type``, ``model``,
    ``for_node``: the node whose progress bar shows the download; ``error`` empty; ``loader``:
    that node as the person sees it, which a failed download's error names); unavailable
    inputs to one that fails with ``error``.

    Args:
        body (`Mapping`): the ``/prompt`` body (or a bare API prompt) `plan` was made from.
        fetch_plan (`FetchPlan`): after `execute`.
        await_class (`str`): the class_type of the waiting node.
        missing_class (`str`, *optional*): the class_type of the failing node (default
            ``await_class``): ComfyUI titles a run-time error with it. Its ``error`` names
            the loader that needs the model (`loader_label`) and the model.
    """
    result = dict(body)
    bare = "prompt" not in result
    prompt: dict[str, Any] = copy.deepcopy(dict(body) if bare else result["prompt"])
    injected: dict[int, str] = {}  # id(Fetch) -> node id
    counter = 0

    def new_node(inputs: dict[str, str], class_type: str = await_class) -> str:
        nonlocal counter
        while True:
            counter += 1
            node_id = f"model-shelf-{counter}"
            if node_id not in prompt:
                break
        prompt[node_id] = {
            "class_type": class_type,
            "inputs": inputs,
            "_meta": {"title": "Model Shelf: fetch model"},
        }
        return node_id

    for planned in fetch_plan.inputs:
        model_input = planned.input
        inputs = prompt[model_input.node_id]["inputs"]
        model_type = model_input.model_type or ""
        if planned.availability is Availability.RESOLVED and planned.name is not None:
            inputs[model_input.input_name] = planned.name
        elif planned.availability is Availability.FETCH and planned.fetch is not None:
            fetch = planned.fetch
            node_id = injected.get(id(fetch))
            if node_id is None:
                node_id = injected[id(fetch)] = new_node(
                    {
                        "task_id": fetch.task_id or "",
                        "model_type": model_type,
                        "model": model_input.value,
                        "for_node": model_input.node_id,
                        "error": "",
                        "loader": loader_label(prompt, model_input.node_id),
                    }
                )
            inputs[model_input.input_name] = [node_id, 0]
        elif planned.availability is Availability.UNAVAILABLE:
            reason = planned.reason or unavailable_message(model_input.value, model_type)
            node_id = new_node(
                {
                    "task_id": "",
                    "model_type": model_type,
                    "model": model_input.value,
                    "for_node": model_input.node_id,
                    "error": f"{loader_label(prompt, model_input.node_id)}: {reason}",
                },
                missing_class or await_class,
            )
            inputs[model_input.input_name] = [node_id, 0]
    if bare:
        return prompt
    result["prompt"] = prompt
    return result


__all__ = [
    "Availability",
    "Fetch",
    "FetchPlan",
    "FolderPathsResolver",
    "LibraryResolver",
    "ModelResolver",
    "PlannedInput",
    "execute",
    "loader_label",
    "plan",
    "rewrite",
    "unavailable_message",
]
