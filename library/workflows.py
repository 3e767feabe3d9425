"""ComfyUI workflows and the models they use: finding them, stamping them, locking them.

Two shapes of the same graph reach us:

- the **UI workflow** (what the page saves, and sends along in ``extra_pnginfo.workflow``):
  ``nodes`` with ``type``, positional ``widgets_values`` and ``properties``; subgraphs under
  ``definitions.subgraphs``;
- the **API prompt** (what ``POST /prompt`` runs): ``{node_id: {"class_type", "inputs"}}``,
  where an input is a value or a link ``[node_id, slot]``.

Either may carry model metadata in the frontend's ``zModelFile`` form: a top-level ``models``
list and each node's ``properties.models``, entries ``{name, url, directory, hash?,
hash_type?}``. The page's missing-models dialog only reads a node's entry whose ``name`` equals
one of that node's widget values, so that is how `stamp` names them.

Which inputs name a model: a table of ComfyUI's loaders (`KNOWN_LOADERS`, checked against
``nodes.py`` and ``comfy_extras`` of 0.3.64), plus a generic rule for other nodes: an input
named like a model input (``*_name``, ``ckpt``, ``model``...) whose value is a file with a model
extension counts when metadata (or the library) says which type folder it belongs to.

`stamp` writes metadata for the library models a workflow uses; `lock` exports its exact model
set as a `Lockfile`; `fetch_lock` gets that set on another machine.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .downloads.tasks import TaskOrigin
from .errors import InvalidWorkflowError, ShelfError
from .layout import LEGACY_FOLDERS, MODEL_EXTENSIONS, MODEL_TYPES
from .records import Health, ModelRecord

if TYPE_CHECKING:
    from .downloads.progress import ProgressListener
    from .shelf import Shelf

log = logging.getLogger("model_shelf.workflows")

LOCKFILE_VERSION = 1

# class_type -> ((input name, type folder, index in the UI node's widgets_values), ...).
# The index counts widgets only (linked inputs such as ``model`` or ``clip`` have none).
KNOWN_LOADERS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "CheckpointLoaderSimple": (("ckpt_name", "checkpoints", 0),),
    "CheckpointLoader": (("ckpt_name", "checkpoints", 1),),  # config_name comes first
    "unCLIPCheckpointLoader": (("ckpt_name", "checkpoints", 0),),
    "ImageOnlyCheckpointLoader": (("ckpt_name", "checkpoints", 0),),
    "LoraLoader": (("lora_name", "loras", 0),),
    "LoraLoaderModelOnly": (("lora_name", "loras", 0),),
    "VAELoader": (("vae_name", "vae", 0),),
    "UNETLoader": (("unet_name", "diffusion_models", 0),),
    "CLIPLoader": (("clip_name", "text_encoders", 0),),
    "DualCLIPLoader": (
        ("clip_name1", "text_encoders", 0),
        ("clip_name2", "text_encoders", 1),
    ),
    "TripleCLIPLoader": (
        ("clip_name1", "text_encoders", 0),
        ("clip_name2", "text_encoders", 1),
        ("clip_name3", "text_encoders", 2),
    ),
    "QuadrupleCLIPLoader": (
        ("clip_name1", "text_encoders", 0),
        ("clip_name2", "text_encoders", 1),
        ("clip_name3", "text_encoders", 2),
        ("clip_name4", "text_encoders", 3),
    ),
    "CLIPVisionLoader": (("clip_name", "clip_vision", 0),),
    "ControlNetLoader": (("control_net_name", "controlnet", 0),),
    "DiffControlNetLoader": (("control_net_name", "controlnet", 0),),
    "UpscaleModelLoader": (("model_name", "upscale_models", 0),),
    "StyleModelLoader": (("style_model_name", "style_models", 0),),
    "GLIGENLoader": (("gligen_name", "gligen", 0),),
    "HypernetworkLoader": (("hypernetwork_name", "hypernetworks", 0),),
    "PhotoMakerLoader": (("photomaker_model_name", "photomaker", 0),),
    "ModelPatchLoader": (("name", "model_patches", 0),),
    "AudioEncoderLoader": (("audio_encoder_name", "audio_encoders", 0),),
    "CreateHookLora": (("lora_name", "loras", 0),),
    "CreateHookLoraModelOnly": (("lora_name", "loras", 0),),
    "CreateHookModelAsLora": (("ckpt_name", "checkpoints", 0),),
    "CreateHookModelAsLoraModelOnly": (("ckpt_name", "checkpoints", 0),),
}

# Input names other node packs use for model files (``unet_name``, ``model_path``, ``ckpt``...).
_MODEL_INPUT_NAME = re.compile(r"(?:.*_)?(?:name|path|file)\d*|ckpt|model|lora|vae|unet")
_SHA256_HEX = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


def is_model_filename(value: object) -> bool:
    """True for a string that names a model file (it ends with a model extension)."""
    return isinstance(value, str) and PurePosixPath(value.strip()).suffix.lower() in (
        MODEL_EXTENSIONS
    )


def folder_type(directory: str | None) -> str | None:
    """The library type of a ComfyUI folder name (legacy names mapped), or None if unknown."""
    if not directory:
        return None
    directory = directory.strip().strip("/\\")
    directory = LEGACY_FOLDERS.get(directory, directory)
    return directory if directory in MODEL_TYPES else None


def _basename(name: str) -> str:
    return name.replace("\\", "/").rpartition("/")[2]


# -- model metadata (the frontend's zModelFile) ------------------------------------------------


class ModelEntry(BaseModel):
    """One ``models`` entry of a workflow: where a model file can be downloaded."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    directory: str
    hash: str | None = None
    hash_type: str | None = None

    @property
    def model_type(self) -> str | None:
        """The library type its ``directory`` names, or None for a folder we do not know."""
        return folder_type(self.directory)

    @property
    def sha256(self) -> str | None:
        """``"sha256:<hex>"`` when the entry carries a sha256 (``hash_type`` absent or sha256)."""
        if not self.hash or (self.hash_type or "sha256").strip().lower() != "sha256":
            return None
        match = _SHA256_HEX.match(self.hash.strip())
        return f"sha256:{match[1].lower()}" if match else None


def _entries_of(raw: object) -> list[ModelEntry]:
    entries = []
    if isinstance(raw, list):
        for item in raw:
            try:
                entries.append(ModelEntry.model_validate(item))
            except ValidationError:
                continue  # the page ignores an entry that is not a zModelFile; so do we
    return entries


def iter_ui_nodes(workflow: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a UI workflow, subgraph definitions (nested too) included."""
    graphs: list[Mapping[str, Any]] = [workflow]
    seen: set[int] = set()
    while graphs:
        graph = graphs.pop()
        if id(graph) in seen:
            continue
        seen.add(id(graph))
        for node in graph.get("nodes") or ():
            if isinstance(node, dict):
                yield node
        definitions = graph.get("definitions")
        if isinstance(definitions, Mapping):
            graphs.extend(s for s in definitions.get("subgraphs") or () if isinstance(s, Mapping))


def model_entries(workflow: Mapping[str, Any] | None) -> list[ModelEntry]:
    """Every model entry of a UI workflow: top-level ``models``, subgraphs' ``models`` and each
    node's ``properties.models``. Entries that are not valid ``zModelFile``s are skipped."""
    if not workflow:
        return []
    entries = _entries_of(workflow.get("models"))
    definitions = workflow.get("definitions")
    if isinstance(definitions, Mapping):
        for subgraph in definitions.get("subgraphs") or ():
            if isinstance(subgraph, Mapping):
                entries += _entries_of(subgraph.get("models"))
    for node in iter_ui_nodes(workflow):
        properties = node.get("properties")
        if isinstance(properties, Mapping):
            entries += _entries_of(properties.get("models"))
    return entries


def find_entry(
    entries: Sequence[ModelEntry], value: str, model_type: str | None
) -> ModelEntry | None:
    """The entry describing the model file ``value``: same name, else same file name; of
    ``model_type`` when it is known (an entry for an unknown folder never matches then)."""
    wanted = value.replace("\\", "/").strip()
    candidates = [e for e in entries if model_type is None or e.model_type == model_type]
    for entry in candidates:
        if entry.name.replace("\\", "/").strip() == wanted:
            return entry
    base = _basename(wanted)
    for entry in candidates:
        if _basename(entry.name.strip()) == base:
            return entry
    return None


# -- which inputs name models --------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInput:
    """One input of an API prompt that names a model file."""

    node_id: str
    class_type: str
    input_name: str
    value: str
    model_type: str | None
    """None: a generic input whose type nobody has told (the library may know the name)."""
    entry: ModelEntry | None = None
    """The workflow's metadata for this file, if any."""


def prompt_inputs(
    prompt: Mapping[str, Any], entries: Sequence[ModelEntry] = ()
) -> list[ModelInput]:
    """Every model input of an API prompt whose value is given (not linked).

    Known loaders' inputs always count (whatever the value); another node's input counts when
    its name looks like a model input and its value is a model file name.

    Args:
        prompt (`Mapping`): ``{node_id: {"class_type", "inputs"}}``.
        entries (`Sequence[ModelEntry]`): the workflow's model metadata.
    """
    found: list[ModelInput] = []
    for node_id, node in prompt.items():
        if not isinstance(node, Mapping):
            continue
        class_type = node.get("class_type")
        inputs = node.get("inputs")
        if not isinstance(class_type, str) or not isinstance(inputs, Mapping):
            continue
        known = {name: model_type for name, model_type, _ in KNOWN_LOADERS.get(class_type, ())}
        for input_name, value in inputs.items():
            if not isinstance(value, str) or not value.strip():
                continue  # a link ([id, slot]), a number, or nothing
            model_type = known.get(input_name)
            if model_type is None:
                if not (is_model_filename(value) and _MODEL_INPUT_NAME.fullmatch(input_name)):
                    continue
                entry = find_entry(entries, value, None)
                model_type = entry.model_type if entry is not None else None
            else:
                entry = find_entry(entries, value, model_type)
            found.append(ModelInput(str(node_id), class_type, input_name, value, model_type, entry))
    return found


@dataclass
class WidgetModel:
    """One widget value of a UI workflow node that names a model file."""

    node: dict[str, Any]
    """The node itself (`stamp` writes its ``properties.models``)."""
    key: int | str
    """Where in ``widgets_values`` (an index, or a key when they are a dict)."""
    value: str
    model_type: str | None


def widget_models(workflow: Mapping[str, Any]) -> list[WidgetModel]:
    """Every widget value of a UI workflow's nodes that names a model.

    Known loaders: the widget at the table's index (whatever its value). Other nodes: any
    string widget value with a model extension (its type from the metadata, if described).
    Bypassed and muted nodes count too: the workflow still uses them when they are turned on.
    """
    entries = model_entries(workflow)
    found: list[WidgetModel] = []
    for node in iter_ui_nodes(workflow):
        values = node.get("widgets_values")
        node_type = node.get("type")
        if not isinstance(node_type, str) or not isinstance(values, (list, dict)):
            continue
        known = KNOWN_LOADERS.get(node_type)
        if known:
            for input_name, model_type, index in known:
                value = values.get(input_name) if isinstance(values, dict) else _at(values, index)
                key: int | str = input_name if isinstance(values, dict) else index
                if isinstance(value, str) and value.strip():
                    found.append(WidgetModel(node, key, value, model_type))
            continue
        items = values.items() if isinstance(values, dict) else enumerate(values)
        for key, value in items:
            if is_model_filename(value):
                entry = find_entry(entries, value, None)
                found.append(WidgetModel(node, key, value, entry.model_type if entry else None))
    return found


def _at(values: list[Any], index: int) -> Any:
    return values[index] if 0 <= index < len(values) else None


# -- the documents we are given ------------------------------------------------------------------


@dataclass
class WorkflowDocument:
    """What a JSON file or request body holds: a UI workflow, an API prompt, or both (a
    ``/prompt`` body carries the workflow in ``extra_data.extra_pnginfo.workflow``)."""

    workflow: dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None

    @property
    def entries(self) -> list[ModelEntry]:
        return model_entries(self.workflow)


def _is_api_prompt(data: Mapping[str, Any]) -> bool:
    return bool(data) and all(
        isinstance(v, Mapping) and isinstance(v.get("class_type"), str) for v in data.values()
    )


def read_document(data: object) -> WorkflowDocument:
    """Recognise a UI workflow, an API prompt, or a ``/prompt`` request body.

    Raises:
        `InvalidWorkflowError`: none of those.
    """
    if not isinstance(data, dict):
        raise InvalidWorkflowError("not a ComfyUI workflow: expected a JSON object")
    if isinstance(data.get("nodes"), list):
        return WorkflowDocument(workflow=data)
    if isinstance(data.get("prompt"), dict):
        extra = data.get("extra_data")
        pnginfo = extra.get("extra_pnginfo") if isinstance(extra, dict) else None
        workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
        return WorkflowDocument(
            workflow=workflow if isinstance(workflow, dict) else None, prompt=data["prompt"]
        )
    if _is_api_prompt(data):
        return WorkflowDocument(prompt=data)
    raise InvalidWorkflowError(
        "not a ComfyUI workflow: expected a saved workflow (with 'nodes'), an API prompt "
        "({id: {class_type, inputs}}), or a /prompt body (with 'prompt')"
    )


# -- the library's side --------------------------------------------------------------------------


def present(shelf: Shelf, record: ModelRecord) -> bool:
    """True when a record's model is in place (not a ghost whose file is gone)."""
    return record.health is not Health.MISSING and shelf.model_path(record).exists()


def library_model(shelf: Shelf, value: str, model_type: str | None) -> ModelRecord | None:
    """The one library model ``value`` (a name, file name, alias or hash) means, or None
    (nothing, or several: a guess could pick the wrong model)."""
    try:
        matches = shelf.catalog.find_all(value.replace("\\", "/").strip(), model_type)
    except ShelfError as exc:
        log.warning("Model Shelf: cannot look up %r: %s", value, exc)
        return None
    return matches[0] if len(matches) == 1 else None


def http_sources(record: ModelRecord) -> list[str]:
    """The record's source URLs that another machine could download from, best first; when it
    has none of its own, the one its metadata found (issue #12: a verified or likely match)."""
    own = [
        s.url
        for s in record.sources
        if s.kind in ("huggingface", "civitai", "url") and s.url.startswith(("https://", "http://"))
    ]
    enriched = record.metadata.source_url()
    if not own and enriched and enriched.startswith(("https://", "http://")):
        return [enriched]
    return own


def _sha_hex(record: ModelRecord) -> str | None:
    sha = record.sha256
    return sha.split(":", 1)[1] if sha else None


# -- stamp ---------------------------------------------------------------------------------------


@dataclass
class StampReport:
    """What `stamp` did. ``workflow`` is the stamped copy (the input is left alone)."""

    workflow: dict[str, Any]
    stamped: list[str] = field(default_factory=list)
    """``type/name`` of each model an entry was written for."""
    no_source: list[str] = field(default_factory=list)
    """Library models used but not stamped: no source another machine could download from."""
    not_in_library: list[str] = field(default_factory=list)
    """Model file names used that the library does not have (left as they were)."""


def stamp(workflow: Mapping[str, Any], shelf: Shelf) -> StampReport:
    """Write ``properties.models`` entries for every library model a UI workflow uses.

    Each entry is ``{name, url, directory, hash, hash_type: "sha256"}``: ``name`` is the
    node's widget value (the page's missing-models dialog matches entries to widget values; a
    value that is an alias or hash gets the library name instead), ``url`` the model's first
    recorded source, ``directory`` its type folder, ``hash`` its sha256 (omitted until it is
    computed). An entry of the same name and directory is replaced; others are kept.

    Args:
        workflow (`Mapping`): a UI workflow (``nodes`` ...). An API prompt has no place for
            metadata: use `lock` for it.
        shelf (`Shelf`): the library.

    Returns:
        `StampReport`: the stamped copy, and what could not be stamped.

    Raises:
        `InvalidWorkflowError`: not a UI workflow.
    """
    document = read_document(dict(workflow))
    if document.workflow is None:
        raise InvalidWorkflowError(
            "stamp needs a saved workflow (with 'nodes'); an API prompt has no place for model "
            "metadata (use lock instead)"
        )
    stamped = copy.deepcopy(document.workflow)
    report = StampReport(stamped)
    for use in widget_models(stamped):
        record = library_model(shelf, use.value, use.model_type)
        if record is None or not present(shelf, record):
            if use.model_type is not None and is_model_filename(use.value):
                _note(report.not_in_library, f"{use.model_type}/{use.value}")
            continue
        urls = http_sources(record)
        if not urls:
            _note(report.no_source, record.display())
            continue
        name = use.value if is_model_filename(use.value) else record.name
        entry: dict[str, Any] = {"name": name, "url": urls[0], "directory": record.type}
        sha = _sha_hex(record)
        if sha is not None:
            entry.update(hash=sha, hash_type="sha256")
        properties = use.node.get("properties")
        if not isinstance(properties, dict):
            properties = use.node["properties"] = {}
        models = properties.get("models")
        if not isinstance(models, list):
            models = properties["models"] = []
        models[:] = [
            m
            for m in models
            if not (
                isinstance(m, dict)
                and m.get("name") == name
                and folder_type(m.get("directory")) == record.type
            )
        ]
        models.append(entry)
        _note(report.stamped, record.display())
    return report


def _note(names: list[str], name: str) -> None:
    if name not in names:
        names.append(name)


# -- lock ----------------------------------------------------------------------------------------


class LockedModel(BaseModel):
    """One model of a lockfile: enough to get exactly this file again, anywhere."""

    name: str = Field(min_length=1)
    """Its name under the type folder."""
    type: str
    size: int = Field(ge=0)
    sha256: str | None = None
    """``"sha256:<hex>"``; None only if it was not computed yet when the lock was made."""
    sources: list[str] = Field(default_factory=list)

    @field_validator("sha256")
    @classmethod
    def _normal_sha256(cls, value: str | None) -> str | None:
        """Hex with or without ``sha256:`` (a hand-written lockfile) -> ``"sha256:<hex>"``."""
        if value is None:
            return None
        match = _SHA256_HEX.match(value.strip())
        if match is None:
            raise ValueError("expected 64 hex digits, with or without 'sha256:'")
        return f"sha256:{match[1].lower()}"


class Lockfile(BaseModel):
    """A workflow's exact model set (``lock``), fetched elsewhere with ``fetch-lock``."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = LOCKFILE_VERSION
    models: list[LockedModel] = Field(default_factory=list)


@dataclass
class LockReport:
    lockfile: Lockfile
    missing: list[str] = field(default_factory=list)
    """Model file names the workflow uses that the library does not have (not locked)."""


def document_models(document: WorkflowDocument) -> list[tuple[str, str | None]]:
    """``(value, type)`` of every model a document uses: the API prompt's inputs when there is
    a prompt (what actually runs), else the UI workflow's widgets."""
    if document.prompt is not None:
        return [(i.value, i.model_type) for i in prompt_inputs(document.prompt, document.entries)]
    assert document.workflow is not None
    return [(w.value, w.model_type) for w in widget_models(document.workflow)]


def lock(data: Mapping[str, Any], shelf: Shelf) -> LockReport:
    """Export the exact set of library models a workflow (or API prompt) uses.

    Args:
        data (`Mapping`): a UI workflow, an API prompt, or a ``/prompt`` body.
        shelf (`Shelf`): the library.

    Returns:
        `LockReport`: the lockfile (sorted by type and name), and the models left out.

    Raises:
        `InvalidWorkflowError`: none of those shapes.
    """
    document = read_document(dict(data))
    locked: dict[str, LockedModel] = {}
    missing: list[str] = []
    for value, model_type in document_models(document):
        record = library_model(shelf, value, model_type)
        if record is None or not present(shelf, record):
            if model_type is not None and is_model_filename(value):
                _note(missing, f"{model_type}/{value}")
            continue
        locked[record.id] = LockedModel(
            name=record.name,
            type=record.type,
            size=record.size,
            sha256=record.sha256,
            sources=http_sources(record),
        )
    models = sorted(locked.values(), key=lambda m: (m.type, m.name))
    return LockReport(Lockfile(models=models), missing)


def read_lockfile(data: object) -> Lockfile:
    """Parse a lockfile's JSON.

    Raises:
        `InvalidWorkflowError`: not a lockfile of a version we read.
    """
    try:
        return Lockfile.model_validate(data)
    except ValidationError as exc:
        raise InvalidWorkflowError(f"not a Model Shelf lockfile: {exc.errors()[0]['msg']}") from exc


# -- fetch a lockfile ----------------------------------------------------------------------------


@dataclass
class LockFetch:
    """What `fetch_lock` did for one locked model."""

    model: str
    """``type/name`` as locked."""
    state: Literal["present", "queued", "done", "failed", "unavailable"]
    name: str | None = None
    """``type/name`` in this library (it may differ from the locked name: same content)."""
    task_id: str | None = None
    message: str | None = None


def fetch_lock(
    lockfile: Lockfile,
    shelf: Shelf,
    wait: bool = True,
    listener: ProgressListener | None = None,
) -> list[LockFetch]:
    """Get every model of a lockfile into the library.

    A model is present when the library has a file of the same type with its sha256 (any
    name), or, for a model locked without a sha256, of its name. Otherwise its sources are
    tried in order until one is accepted, expecting the locked sha256 (a different file is
    refused by the download engine).

    Args:
        lockfile (`Lockfile`): what to get.
        shelf (`Shelf`): the library.
        wait (`bool`, *optional*): download now, in the foreground (the way ``add`` does;
            Ctrl-C pauses), instead of only queueing for ComfyUI or ``resume --wait``.
        listener (`ProgressListener`, *optional*): download progress, while waiting.

    Returns:
        `list[LockFetch]`: one per locked model, in order.
    """
    results: list[LockFetch] = []
    for model in lockfile.models:
        label = f"{model.type}/{model.name}"
        model_type = folder_type(model.type)
        if model_type is None:
            results.append(LockFetch(label, "unavailable", message=f"unknown type {model.type}"))
            continue
        record = _locked_present(shelf, model, model_type)
        if record is not None:
            results.append(LockFetch(label, "present", name=record.display()))
            continue
        results.append(_queue_locked(shelf, model, model_type, label))
    waiting = [r.task_id for r in results if r.state == "queued" and r.task_id]
    if wait and waiting:
        ended = {t.id: t for t in shelf.downloads.run_foreground(waiting, listener)}
        for result in results:
            task = ended.get(result.task_id or "")
            if task is None:
                continue
            if task.state.value == "done":
                result.state, result.name = "done", task.model_name
            elif task.in_terminal_state:
                result.state = "failed"
                result.message = f"[{task.error_code or task.state.value}] " + (
                    task.error_message or task.state.value
                )
    return results


def _locked_present(shelf: Shelf, model: LockedModel, model_type: str) -> ModelRecord | None:
    if model.sha256:
        for record in shelf.index.by_hash(model.sha256):
            same = record.type == model_type and record.sha256 == model.sha256
            if same and present(shelf, record):
                return record
        return None
    record = library_model(shelf, model.name, model_type)
    return record if record is not None and present(shelf, record) else None


def _queue_locked(shelf: Shelf, model: LockedModel, model_type: str, label: str) -> LockFetch:
    if not model.sources:
        return LockFetch(label, "unavailable", message="the lockfile names no source for it")
    errors = []
    for source in model.sources:
        try:
            # Someone else's lockfile, like a shared workflow: public addresses only.
            task = shelf.downloads.add(
                source, model_type, model.name, model.sha256, origin=TaskOrigin.WORKFLOW
            )
        except ShelfError as exc:
            errors.append(f"{source}: [{exc.code}] {exc.message}")
            continue
        if task.state.value == "done":
            return LockFetch(label, "done", name=task.model_name, task_id=task.id)
        return LockFetch(label, "queued", task_id=task.id)
    return LockFetch(label, "unavailable", message="; ".join(errors))


__all__ = [
    "KNOWN_LOADERS",
    "LockFetch",
    "LockReport",
    "LockedModel",
    "Lockfile",
    "ModelEntry",
    "ModelInput",
    "StampReport",
    "WidgetModel",
    "WorkflowDocument",
    "fetch_lock",
    "find_entry",
    "folder_type",
    "is_model_filename",
    "iter_ui_nodes",
    "library_model",
    "lock",
    "model_entries",
    "prompt_inputs",
    "read_document",
    "read_lockfile",
    "stamp",
    "widget_models",
]
