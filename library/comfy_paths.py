"""The ``folder_paths`` bridge: library models inside ComfyUI, with no copy and no link.

ComfyUI finds model files through its ``folder_paths`` module. The bridge receives that module
as an argument (``library/`` never imports ComfyUI) and:

- registers each library type folder with ``add_model_folder_path(type, path)`` (appended, so
  ComfyUI's own folders and ``extra_model_paths.yaml`` keep priority). Every consumer then sees
  library models: loader combos, ``/experiment/models``, embeddings, the core asset scanner;
- wraps ``get_full_path`` so that what ComfyUI cannot find by itself still resolves: a bare
  filename whose model sits in a subfolder, an alias recorded for a model (the name a public
  workflow uses), or a hash (``sha256:…``, 8+ hex digits). ComfyUI's own answer wins;
- wraps ``get_filename_list`` to hide models tagged as hidden for this install, and to survive
  ComfyUI's vanished-folder trap (a cached folder that disappeared makes the listing raise
  ``FileNotFoundError`` until the cache entry is dropped);
- counts each resolved library model (`UsageRecorder`, off the hot path);
- withdraws its folders when the library root disappears and puts them back when it returns.

The folders can be registered before the library is open (`register_folders`, on ComfyUI's
thread while it imports node packs; only strings, no disk access): ComfyUI 0.33's core asset
scan starts right after the node packs are imported, and only walks folders registered by then
(its start-up prune also marks what it knew outside them missing, and with hashing on, a missing
file is only recovered by hashing it again). The bridge then takes those folders over.

Speed (see ``bench/bench_resolution.py``): over ComfyUI's own, unwrapped functions two answers
are computed without them, with the same result: a recorded library name is found by checking
the folders ahead of ours exactly as ComfyUI would (saving its name normalisation and a second
stat), and the cached listing of a type (``get_filename_list_``) walks our folders without a
``relpath`` per file (a library holds a sidecar beside every model). If another pack wrapped
those functions first, everything goes through the chain instead.

Wrappers are installed once per ``folder_paths`` module (`install_hooks`), chained to whatever
function was there before (another pack's wrapper keeps working) and marked, so installing again
only points the existing wrappers at the new bridge. They never create a file, link or folder.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType

from .comfy_settings import ComfySettings
from .errors import ShelfError
from .index import NameRow
from .layout import LEGACY_FOLDERS, MODEL_TYPES
from .records import Health
from .shelf import Shelf
from .usage import UsageRecorder

log = logging.getLogger(__name__)

HOOK_MARK = "__model_shelf_hook__"
"""Attribute set on our wrappers; its value is the `Hook` the wrapper calls."""

_HASH_QUERY = re.compile(r"(?:[a-z0-9_]+:)?[0-9a-fA-F]{8,128}")
_MAX_CHAIN = 64  # wrappers of wrappers we follow looking for ours; guards against cycles


class Hook:
    """The target of one installed wrapper. Pointing it at another bridge re-targets the wrapper
    without wrapping twice; ``bridge = None`` makes the wrapper a plain pass-through."""

    __slots__ = ("bridge",)

    def __init__(self) -> None:
        self.bridge: FolderPathsBridge | None = None


@dataclass(frozen=True)
class Hooks:
    """The wrappers installed on one ``folder_paths`` module.

    ``list_builder`` (ComfyUI's internal ``get_filename_list_``) is only wrapped when it is
    ComfyUI's own, untouched function; otherwise it is None and ComfyUI lists the folders.
    """

    full_path: Hook
    filename_list: Hook
    list_builder: Hook | None

    def attach(self, bridge: FolderPathsBridge | None) -> None:
        for hook in (self.full_path, self.filename_list, self.list_builder):
            if hook is not None:
                hook.bridge = bridge

    def detach(self, bridge: FolderPathsBridge) -> None:
        """Make the wrappers pass-throughs, if they still point at ``bridge``."""
        for hook in (self.full_path, self.filename_list, self.list_builder):
            if hook is not None and hook.bridge is bridge:
                hook.bridge = None


def _find_hook(func: Callable[..., object]) -> Hook | None:
    """Our `Hook` if ``func`` is our wrapper or wraps it (through ``functools.wraps`` chains)."""
    for _ in range(_MAX_CHAIN):
        hook = getattr(func, HOOK_MARK, None)
        if isinstance(hook, Hook):
            return hook
        inner = getattr(func, "__wrapped__", None)
        if inner is None:
            return None
        func = inner
    return None


def _is_comfy_own(func: Callable[..., object], folder_paths: ModuleType, name: str) -> bool:
    """True if ``func`` is ``folder_paths``'s own function ``name``, wrapped by nobody."""
    return (
        getattr(func, "__module__", None) == folder_paths.__name__
        and getattr(func, "__name__", None) == name
        and not hasattr(func, "__wrapped__")
    )


def install_hooks(folder_paths: ModuleType) -> Hooks:
    """Wrap ``get_full_path`` and ``get_filename_list`` once; later calls find the wrappers.

    Cheap and free of disk I/O, so it can run while ComfyUI imports node packs (on its thread,
    so no other pack's wrapper is lost to a race). Until a bridge is attached the wrappers only
    pass calls through.

    Args:
        folder_paths (`ModuleType`): ComfyUI's ``folder_paths`` module (or a stand-in).

    Returns:
        `Hooks`: the installed wrappers' targets.
    """
    full_path = _find_hook(folder_paths.get_full_path)
    if full_path is None:
        full_path = Hook()
        folder_paths.get_full_path = _wrap_full_path(
            folder_paths, folder_paths.get_full_path, full_path
        )
    filename_list = _find_hook(folder_paths.get_filename_list)
    if filename_list is None:
        filename_list = Hook()
        folder_paths.get_filename_list = _wrap_filename_list(
            folder_paths, folder_paths.get_filename_list, filename_list
        )
    builder = getattr(folder_paths, "get_filename_list_", None)
    list_builder = None if builder is None else _find_hook(builder)
    if list_builder is None and builder is not None and _can_build_lists(folder_paths, builder):
        list_builder = Hook()
        folder_paths.get_filename_list_ = _wrap_list_builder(builder, list_builder)
    return Hooks(full_path, filename_list, list_builder)


def _can_build_lists(folder_paths: ModuleType, builder: Callable[..., object]) -> bool:
    """Whether we may stand in for ComfyUI's listing of our folders: only over its own code,
    with the helpers whose behaviour we mirror where we know them (0.3.64)."""
    return _is_comfy_own(builder, folder_paths, "get_filename_list_") and all(
        callable(getattr(folder_paths, name, None))
        for name in ("recursive_search", "filter_files_extensions", "map_legacy")
    )


def _wrap_full_path(
    folder_paths: ModuleType, previous: Callable[[str, str], str | None], hook: Hook
) -> Callable[[str, str], str | None]:
    # Over ComfyUI's own function (no other pack in between) a library name can be answered
    # without it, with the same checks in the same order; that saves its name normalisation
    # and keeps a library model as fast to find as one in models/.
    direct = _is_comfy_own(previous, folder_paths, "get_full_path")

    @functools.wraps(previous)
    def get_full_path(folder_name: str, filename: str) -> str | None:
        bridge = hook.bridge
        if bridge is not None and direct:
            try:
                found = bridge.direct_lookup(folder_name, filename)
            except Exception:  # our code on ComfyUI's thread: fall back to ComfyUI's lookup
                bridge.log_failure("get_full_path")
                found = None
            if found is not None:
                return found
        found = previous(folder_name, filename)  # ComfyUI and packs wrapped before us go first
        bridge = hook.bridge
        if bridge is None:
            return found
        try:
            return bridge.after_lookup(folder_name, filename, found)
        except Exception:  # our code on ComfyUI's thread: a bug here must not fail a model load
            bridge.log_failure("get_full_path")
            return found

    setattr(get_full_path, HOOK_MARK, hook)
    return get_full_path


def _wrap_filename_list(
    folder_paths: ModuleType, previous: Callable[[str], list[str]], hook: Hook
) -> Callable[[str], list[str]]:
    @functools.wraps(previous)
    def get_filename_list(folder_name: str) -> list[str]:
        try:
            names = previous(folder_name)
        except FileNotFoundError:
            # ComfyUI's trap: a folder recorded in the cached listing vanished (unmounted drive,
            # deleted subfolder) and the mtime check raises until the entry is dropped. Drop it
            # and list again; a vanished folder then simply lists nothing. (If it was the
            # library root, the watcher withdraws our folders and says so on its next check.)
            vanished = _vanished_folders(folder_paths, folder_name)
            _drop_cached_listing(folder_paths, folder_name)
            bridge = hook.bridge
            theirs = [f for f in vanished if bridge is None or not bridge.is_library_path(f)]
            if theirs:
                log.warning(
                    "Model Shelf: folder(s) of %r vanished: %s; ComfyUI lists the rest",
                    folder_name,
                    ", ".join(theirs),
                )
            names = previous(folder_name)
        bridge = hook.bridge
        if bridge is None or not bridge.hiding:  # the common case costs one attribute read
            return names
        try:
            return bridge.filter_listing(folder_name, names)
        except Exception:  # our code on ComfyUI's thread: never fail a listing over a filter
            bridge.log_failure("get_filename_list")
            return names

    setattr(get_filename_list, HOOK_MARK, hook)
    return get_filename_list


ListResult = tuple[list[str], dict[str, float], float]


def _wrap_list_builder(
    previous: Callable[[str], ListResult], hook: Hook
) -> Callable[[str], ListResult]:
    @functools.wraps(previous)
    def get_filename_list_(folder_name: str) -> ListResult:
        bridge = hook.bridge
        if bridge is not None:
            try:
                built = bridge.build_listing(folder_name)
            except Exception:  # our code on ComfyUI's thread: let ComfyUI list instead
                bridge.log_failure("get_filename_list_")
                built = None
            if built is not None:
                return built
        return previous(folder_name)

    setattr(get_filename_list_, HOOK_MARK, hook)
    return get_filename_list_


def _vanished_folders(folder_paths: ModuleType, folder_name: str) -> list[str]:
    """Folders in ComfyUI's cached listing of a type that are gone now."""
    cached = folder_paths.filename_list_cache.get(folder_paths.map_legacy(folder_name))
    folders = cached[1] if isinstance(cached, tuple) and len(cached) > 1 else {}
    return [f for f in folders if not os.path.isdir(f)]


def _drop_cached_listing(folder_paths: ModuleType, folder_name: str) -> None:
    """Forget ComfyUI's cached listing of one type, both its mtime cache and its strong cache."""
    folder_paths.filename_list_cache.pop(folder_paths.map_legacy(folder_name), None)
    helper = getattr(folder_paths, "cache_helper", None)
    strong = getattr(helper, "cache", None)
    if isinstance(strong, dict):
        strong.pop(folder_paths.map_legacy(folder_name), None)


def walk_model_folder(
    directory: str, extensions: Collection[str]
) -> tuple[list[str], dict[str, float]]:
    """List ``directory`` as ComfyUI 0.3.64 lists a model folder, faster.

    Same answer as its ``recursive_search`` followed by ``filter_files_extensions``: relative
    names with the platform's separator, of files whose extension is in ``extensions`` (any
    when empty), symlinked folders followed, ``.git`` skipped; plus the mtime of the folder
    and of every subfolder, which ComfyUI's cache checks. A library folder holds a sidecar
    beside every model; ComfyUI would pay a ``relpath`` for each, this walk pays nothing.

    Returns:
        `tuple`: (names, not sorted; ``{folder: mtime}``). A missing folder gives ``([], {})``.
    """
    if not os.path.isdir(directory):
        return [], {}
    mtimes: dict[str, float] = {}
    with contextlib.suppress(FileNotFoundError):  # vanished this instant: as ComfyUI, go on
        mtimes[directory] = os.path.getmtime(directory)
    any_extension = len(extensions) == 0
    names: list[str] = []
    stack = [(directory, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError:
            continue  # unreadable or gone: os.walk skips it silently too
        for entry in listed:
            if entry.is_dir():  # follows symlinks, as os.walk(followlinks=True)
                if entry.name == ".git":
                    continue
                try:
                    mtimes[entry.path] = os.path.getmtime(entry.path)
                except FileNotFoundError:
                    continue
                stack.append((entry.path, prefix + entry.name + os.sep))
            elif any_extension or os.path.splitext(entry.name)[1].lower() in extensions:
                names.append(prefix + entry.name)
    return names, mtimes


@dataclass
class TypeNames:
    """Lookup tables for one type folder, built from the index."""

    names: set[str] = field(default_factory=set)
    by_basename: dict[str, list[str]] = field(default_factory=dict)
    by_alias: dict[str, list[str]] = field(default_factory=dict)  # casefolded alias -> names
    hidden: set[str] = field(default_factory=set)


def build_lookup(rows: Iterable[NameRow], settings: ComfySettings) -> dict[str, TypeNames]:
    """Per-type name, filename and alias tables (and the hidden set) from the index rows."""
    tables: dict[str, TypeNames] = {t: TypeNames() for t in MODEL_TYPES}
    for row in rows:
        table = tables.get(row.type)
        if table is None:
            continue
        table.names.add(row.name)
        table.by_basename.setdefault(row.name.rpartition("/")[2], []).append(row.name)
        for alias in row.aliases:
            table.by_alias.setdefault(alias.casefold(), []).append(row.name)
        if settings.hides_tags(list(row.tags)):
            table.hidden.add(row.name)
    return tables


class FolderPathsBridge:
    """Makes one opened library visible to ComfyUI through its ``folder_paths`` module.

    Thread-safe: ComfyUI calls the wrappers from its server and worker threads while the watcher
    calls `refresh` and `root_changed` from its own.
    """

    def __init__(
        self,
        shelf: Shelf,
        folder_paths: ModuleType,
        settings: ComfySettings,
        usage: UsageRecorder | None = None,
        *,
        registered: Mapping[str, str] | None = None,
        on_register: Callable[[], None] | None = None,
    ) -> None:
        """
        Args:
            registered (`Mapping[str, str]`, *optional*): the folders `register_folders` already
                added for this library (type -> folder); they are ours to withdraw.
            on_register (`Callable[[], None]`, *optional*): called (outside the bridge's lock)
                each time the bridge adds folders ComfyUI did not list yet: the library root
                came (back) after ComfyUI started, so what scanned ComfyUI's folders at start
                (its core asset scan) has not seen them.
        """
        self.shelf = shelf
        self.folder_paths = folder_paths
        self.settings = settings
        self.usage = usage
        self.on_register = on_register
        self._lock = threading.Lock()
        self._available = False
        self._dirs = library_folders(shelf.root, folder_paths, settings)
        self._types = tuple(self._dirs)
        self._root_prefix = os.path.normcase(os.path.abspath(shelf.root)) + os.sep
        # type -> folder string we added (ours to withdraw)
        self._added: dict[str, str] = dict(registered or {})
        self._own: dict[str, frozenset[str]] = {}  # type -> our folder strings, as listed
        self._prefixes: dict[str, tuple[str, ...]] = {}  # type -> the same, ending in os.sep
        self._lookup: dict[str, TypeNames] = {}
        self.hiding = False  # whether any model is hidden here (read on every listing)
        self._hooks: Hooks | None = None
        self._logged_failures: set[str] = set()
        self._logged_ambiguous: set[tuple[str, str]] = set()

    @property
    def types(self) -> tuple[str, ...]:
        """The library types this install registers (known to ComfyUI, not hidden)."""
        return self._types

    @property
    def available(self) -> bool:
        """True while the library's folders are registered with ComfyUI."""
        return self._available

    # -- lifecycle -------------------------------------------------------------

    def install(self) -> None:
        """Attach to the wrappers (installing them if needed), register folders, build lookups.

        Raises:
            `IndexStoreError`: the index cannot be read (the folders are registered anyway).
        """
        self._hooks = install_hooks(self.folder_paths)
        self._hooks.attach(self)
        if not self.check_root():
            with self._lock:  # folders registered before the library opened, if any, go too
                self._withdraw()
        self.refresh()

    def close(self) -> None:
        """Withdraw our folders and turn the wrappers into pass-throughs."""
        if self._hooks is not None:
            self._hooks.detach(self)
        with self._lock:
            self._withdraw()
            self._available = False

    # -- the root coming and going -----------------------------------------------

    def check_root(self) -> bool:
        """Register or withdraw our folders to match whether the library root is there.

        Logs once per change: a warning when the root goes, a note when it is back.

        Returns:
            `bool`: whether the root is available now.
        """
        return self.root_changed(self.shelf.layout.state_dir.is_dir())

    def root_changed(self, available: bool) -> bool:
        """Act on the root's availability as seen by the caller (the watcher).

        Args:
            available (`bool`): whether the library root is reachable now.

        Returns:
            `bool`: ``available``.
        """
        added = False
        with self._lock:
            if available == self._available:
                return available
            if available:
                added = self._register()
                log.info(
                    "Model Shelf: library root %s is available; its models are listed",
                    self.shelf.root,
                )
            else:
                self._withdraw()
                log.warning(
                    "Model Shelf: library root %s is gone (drive unmounted or share lost); its "
                    "models are hidden until it returns, everything else keeps working",
                    self.shelf.root,
                )
            self._available = available
        self._invalidate(self._types)
        if added and self.on_register is not None:
            self.on_register()
        return available

    def _register(self) -> bool:
        """Register our folders; True if ComfyUI did not list one of them yet."""
        table = self.folder_paths.folder_names_and_paths
        # The same folder listed by extra_model_paths.yaml counts as ours (for usage and fast
        # lookups) but stays the user's: it is not added twice, nor withdrawn. Folders that
        # `register_folders` added before the library opened are already in `_added`.
        added = register_folders(self.folder_paths, self._dirs)
        self._added.update(added)
        self._own = {
            t: frozenset(p for p in table[t][0] if _same_folder(p, folder))
            for t, folder in self._dirs.items()
        }
        self._prefixes = {
            t: tuple(p.rstrip("/\\") + os.sep for p in f) for t, f in self._own.items()
        }
        return bool(added)

    def _own_folder(self, model_type: str, folder: str) -> bool:
        return folder in self._own.get(model_type, ())

    def _withdraw(self) -> None:
        # New (empty) tables first: ComfyUI threads reading them never see half a change.
        self._own, self._prefixes = {}, {}
        withdraw_folders(self.folder_paths, self._added)
        self._added.clear()

    # -- keeping ComfyUI's view fresh --------------------------------------------

    def refresh(self, types: Iterable[str] | None = None) -> None:
        """Rebuild the lookup tables from the index and drop ComfyUI's cached lists of ``types``.

        Args:
            types (`Iterable[str]`, *optional*): the types that changed; all ours by default.

        Raises:
            `IndexStoreError`: the index cannot be read; the old tables stay in use.
        """
        changed = self._types if types is None else tuple(t for t in types if t in self._dirs)
        try:
            lookup = build_lookup(self.shelf.index.name_rows(), self.settings)
            self._lookup = lookup
            self.hiding = any(table.hidden for table in lookup.values())
        finally:
            self._invalidate(changed)

    def library_changed(self, types: frozenset[str]) -> None:
        """`Watcher` listener: the library changed in ``types``."""
        self.refresh(types)

    def _invalidate(self, types: Iterable[str]) -> None:
        for model_type in types:
            _drop_cached_listing(self.folder_paths, model_type)

    # -- what the wrappers call ---------------------------------------------------

    def direct_lookup(self, folder_name: str, filename: str) -> str | None:
        """Answer ``get_full_path`` for a recorded library name without ComfyUI's function.

        Gives exactly ComfyUI's answer: the folders listed before ours are checked first, in
        order, and anything at the name there (a file, a broken link ComfyUI warns about, even
        a folder) is left to ComfyUI to judge. Only used over ComfyUI's own function.

        Returns:
            `str | None`: the model's path in our folder, or None to ask ComfyUI.
        """
        # Canonical type names only (legacy ones go the long way); nothing while withdrawn.
        own = self._own.get(folder_name)
        table = self._lookup.get(folder_name)
        if own is None or table is None:
            return None
        name = filename if os.sep == "/" else filename.replace("\\", "/")
        if name not in table.names or name in table.hidden:
            return None
        relative = filename if os.sep == "/" else name.replace("/", os.sep)
        for folder in self.folder_paths.folder_names_and_paths[folder_name][0]:
            path = os.path.join(folder, relative)
            if folder in own:
                if not os.path.isfile(path):
                    return None
                self._count(folder_name, name)
                return path
            if os.path.lexists(path):  # one lstat: a file, or a link ComfyUI would warn about
                return None
        return None

    def build_listing(self, folder_name: str) -> tuple[list[str], dict[str, float], float] | None:
        """Build ComfyUI's cached listing of a type holding our folders (``get_filename_list_``).

        Other folders of the type are listed by ComfyUI's own helpers, ours by
        `walk_model_folder`; the result has ComfyUI's shape: (sorted names, ``{folder: mtime}``,
        ``time.perf_counter()``).

        Returns:
            The listing, or None for a type without our folders (ComfyUI lists it).
        """
        fp = self.folder_paths
        model_type = fp.map_legacy(folder_name)
        if model_type not in self._own:
            return None
        folders, extensions = fp.folder_names_and_paths[model_type]
        names: set[str] = set()
        mtimes: dict[str, float] = {}
        for folder in folders:
            if self._own_folder(model_type, folder):
                files, found = walk_model_folder(folder, extensions)
            else:
                files, found = fp.recursive_search(folder, excluded_dir_names=[".git"])
                files = fp.filter_files_extensions(files, extensions)
            names.update(files)
            mtimes.update(found)
        return sorted(names), mtimes, time.perf_counter()

    def after_lookup(self, folder_name: str, filename: str, found: str | None) -> str | None:
        """Complete ComfyUI's ``get_full_path`` answer ``found`` for ``folder_name/filename``.

        A path ComfyUI found in a library folder is counted as a use (or refused if the model is
        hidden here); when ComfyUI found nothing, the library is asked.

        Returns:
            `str | None`: the path to load, or None.
        """
        model_type = LEGACY_FOLDERS.get(folder_name, folder_name)
        if found is not None:
            prefixes = self._prefixes.get(model_type)
            if prefixes is None:
                return found
            for prefix in prefixes:
                if found.startswith(prefix):
                    name = found[len(prefix) :]
                    if os.sep != "/":
                        name = name.replace(os.sep, "/")
                    return self._library_path(model_type, name, found)
            return found
        name = self.resolve_name(model_type, filename)
        if name is None:
            return None
        path = os.path.join(self._dirs[model_type], *name.split("/"))
        if not os.path.isfile(path):  # the index can lag behind a file deleted a moment ago
            return None
        self._count(model_type, name)
        return path

    def _library_path(self, model_type: str, name: str, path: str) -> str | None:
        table = self._lookup.get(model_type)
        if table is not None and name in table.hidden:
            return None
        self._count(model_type, name)
        return path

    def _count(self, model_type: str, name: str) -> None:
        """Note one use of the model that ``name`` (or a file inside it) belongs to."""
        table = self._lookup.get(model_type)
        if self.usage is None or table is None:
            return
        owner = name
        # A file inside a folder model ("diffusers-x/unet/model.safetensors") counts for it.
        while owner not in table.names and "/" in owner:
            owner = owner.rpartition("/")[0]
        if owner in table.names:
            self.usage.note(model_type, owner)

    def resolve_name(self, folder_name: str, filename: str) -> str | None:
        """The library name (as ComfyUI lists it) that ``filename`` means in ``folder_name``.

        Tries, in order: the exact name; a bare filename whose model sits in a subfolder (also
        when the workflow's subfolder differs); an alias; a hash prefix (``sha256:…``).
        Several matches of one kind resolve to nothing (logged once): a guess could load the
        wrong model.

        Args:
            folder_name (`str`): a ComfyUI folder type (legacy names accepted).
            filename (`str`): the name a workflow or node asked for.

        Returns:
            `str | None`: the model's name under its type folder, or None.
        """
        model_type = LEGACY_FOLDERS.get(folder_name, folder_name)
        table = self._lookup.get(model_type)
        if table is None or not self._available or model_type not in self._dirs:
            return None
        key = filename.replace("\\", "/").strip().lstrip("/")
        while key.startswith("./"):
            key = key[2:]
        if not key:
            return None
        if key in table.names:
            return None if key in table.hidden else key
        basename = key.rpartition("/")[2]
        for candidates in (
            table.by_basename.get(basename),
            table.by_alias.get(key.casefold()),
            table.by_alias.get(basename.casefold()),
        ):
            if candidates:
                return self._one(model_type, filename, candidates, table)
        if _HASH_QUERY.fullmatch(key):
            return self._by_hash(model_type, filename, key, table)
        return None

    def _by_hash(self, model_type: str, filename: str, key: str, table: TypeNames) -> str | None:
        try:
            records = self.shelf.index.by_hash(key)
        except ShelfError as exc:
            log.warning("Model Shelf: cannot look up %r in the index: %s", filename, exc)
            return None
        names = [r.name for r in records if r.type == model_type and r.health is not Health.MISSING]
        return self._one(model_type, filename, names, table) if names else None

    def _one(
        self, model_type: str, filename: str, names: list[str], table: TypeNames
    ) -> str | None:
        visible = sorted({n for n in names if n not in table.hidden})
        if len(visible) == 1:
            return visible[0]
        if len(visible) > 1 and (model_type, filename) not in self._logged_ambiguous:
            self._logged_ambiguous.add((model_type, filename))
            log.warning(
                "Model Shelf: %r in %s matches several library models (%s); not guessing",
                filename,
                model_type,
                ", ".join(visible[:5]),
            )
        return None

    def filter_listing(self, folder_name: str, names: list[str]) -> list[str]:
        """Drop from a ``get_filename_list`` answer the library models hidden in this install.

        A hidden name that also exists in a non-library folder of the type stays listed.
        """
        table = self._lookup.get(LEGACY_FOLDERS.get(folder_name, folder_name))
        if table is None or not table.hidden:
            return names
        ours = set(self._prefixes.get(LEGACY_FOLDERS.get(folder_name, folder_name), ()))
        others = [
            p
            for p in self.folder_paths.folder_names_and_paths[
                self.folder_paths.map_legacy(folder_name)
            ][0]
            if p.rstrip("/\\") + os.sep not in ours
        ]
        hidden = {
            n
            for n in table.hidden
            if not any(os.path.isfile(os.path.join(p, *n.split("/"))) for p in others)
        }
        return [n for n in names if n.replace(os.sep, "/") not in hidden]

    def is_library_path(self, path: str) -> bool:
        """True if ``path`` lies under this bridge's library root."""
        return os.path.normcase(os.path.abspath(path)).startswith(self._root_prefix)

    def log_failure(self, where: str) -> None:
        """Log an unexpected error in a wrapper once per place, with its traceback."""
        if where not in self._logged_failures:
            self._logged_failures.add(where)
            log.exception("Model Shelf: internal error in %s; ComfyUI's answer was used", where)


def library_folders(
    root: str | os.PathLike[str], folder_paths: ModuleType, settings: ComfySettings
) -> dict[str, str]:
    """The type folders of the library at ``root`` that this ComfyUI lists (type -> folder).

    Pure string work, no disk access: safe on ComfyUI's thread even when the root is a slow or
    missing network share. A type this ComfyUI does not know (an older version) would be created
    with no extension filter and list every file, records included: it is left out, as are the
    types this install hides.
    """
    known = folder_paths.folder_names_and_paths
    return {
        t: os.path.join(str(root), t)
        for t in MODEL_TYPES
        if t in known and t not in settings.hide_types
    }


def register_folders(folder_paths: ModuleType, folders: Mapping[str, str]) -> dict[str, str]:
    """Append each folder to its ComfyUI type (``add_model_folder_path``) unless already listed.

    Args:
        folder_paths (`ModuleType`): ComfyUI's ``folder_paths``.
        folders (`Mapping[str, str]`): type -> folder, e.g. from `library_folders`.

    Returns:
        `dict[str, str]`: the folders this call added (type -> folder), to withdraw later with
        `withdraw_folders`; a folder listed already (``extra_model_paths.yaml``) stays the user's.
    """
    table = folder_paths.folder_names_and_paths
    added: dict[str, str] = {}
    for model_type, folder in folders.items():
        if not any(_same_folder(p, folder) for p in table[model_type][0]):
            folder_paths.add_model_folder_path(model_type, folder, is_default=False)
            added[model_type] = folder
    return added


def withdraw_folders(folder_paths: ModuleType, added: Mapping[str, str]) -> None:
    """Remove folders that `register_folders` added (and nothing else) from ComfyUI's lists."""
    table = folder_paths.folder_names_and_paths
    for model_type, folder in added.items():
        paths = table.get(model_type, ([], set()))[0]
        if folder in paths:
            paths.remove(folder)


def _same_folder(a: str, b: str) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


__all__ = [
    "HOOK_MARK",
    "FolderPathsBridge",
    "Hook",
    "Hooks",
    "TypeNames",
    "build_lookup",
    "install_hooks",
    "library_folders",
    "register_folders",
    "withdraw_folders",
]
