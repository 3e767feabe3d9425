"""Tests for library/comfy_paths.py: the folder_paths bridge over a stand-in ComfyUI 0.3.64.

Real files, a real SQLite index, the stand-in ``folder_paths`` (tests/comfy_stubs) in
``sys.modules``. Changes made elsewhere reach the bridge through the real watcher (as inside
ComfyUI); tests wait for its notices on a queue, with a timeout, never with a sleep.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from comfy_stubs import Comfy, write_model

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.comfy_paths import (
    HOOK_MARK,
    FolderPathsBridge,
    install_hooks,
    library_folders,
    register_folders,
    walk_model_folder,
    withdraw_folders,
)
from model_shelf.library.comfy_settings import ComfySettings
from model_shelf.library.errors import IndexStoreError
from model_shelf.library.layout import MODEL_TYPES
from model_shelf.library.records import ModelRecord
from model_shelf.library.settings import HealthSettings
from model_shelf.library.usage import UsageRecorder

pytest_plugins = ["comfy_stubs.fixtures"]

WAIT_SECONDS = 30.0
QUICK_WATCH = HealthSettings(
    debounce_seconds=0.05, settle_seconds=0.3, placed_grace_seconds=0.2, verify_interval_days=0
)


class Notices:
    """A library listener beside the bridge: what the watcher told, as a queue to wait on."""

    def __init__(self) -> None:
        self.queue: queue.Queue[None] = queue.Queue()
        self.changed: list[frozenset[str]] = []
        self.roots: list[bool] = []

    def library_changed(self, types: frozenset[str]) -> None:
        self.changed.append(types)
        self.queue.put(None)

    def root_changed(self, available: bool) -> None:
        self.roots.append(available)
        self.queue.put(None)

    def wait_until(self, predicate: Callable[[], object], what: str) -> None:
        """Return once ``predicate()`` holds, looking again after every notice."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            try:
                self.queue.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue


@pytest.fixture
def watched(shelf: Shelf, bridge: FolderPathsBridge) -> Iterator[Notices]:
    """The watcher running with the bridge subscribed, as ``comfy_entry`` runs it."""
    watcher = shelf.start_watching(QUICK_WATCH)
    notices = Notices()
    watcher.subscribe(bridge)
    watcher.subscribe(notices)
    try:
        assert watcher.wait_idle(WAIT_SECONDS)
        yield notices
    finally:
        shelf.stop_watching()


@pytest.fixture
def usage(shelf: Shelf) -> Iterator[UsageRecorder]:
    recorder = UsageRecorder(shelf)  # never started: tests flush by hand
    yield recorder


@pytest.fixture
def make_bridge(
    comfy: Comfy, shelf: Shelf, usage: UsageRecorder
) -> Iterator[Callable[..., FolderPathsBridge]]:
    made: list[FolderPathsBridge] = []

    def make(settings: ComfySettings | None = None) -> FolderPathsBridge:
        bridge = FolderPathsBridge(shelf, comfy.folder_paths, settings or ComfySettings(), usage)
        bridge.install()
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        bridge.close()


@pytest.fixture
def bridge(make_bridge: Callable[..., FolderPathsBridge]) -> FolderPathsBridge:
    return make_bridge()


def add_model(
    shelf: Shelf,
    tmp_path: Path,
    name: str,
    model_type: str = "checkpoints",
    *,
    aliases: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
) -> ModelRecord:
    """Import a fresh tiny model by copy, then record aliases and tags as an edit would."""
    source = write_model(tmp_path / "incoming" / model_type / name, tag=f"{model_type}/{name}")
    record = shelf.import_model(source, model_type, ImportMode.COPY, name=name)
    if aliases or tags:
        record.aliases, record.tags = list(aliases), list(tags)
        shelf.catalog.save(record)
    return record


def lib_path(shelf: Shelf, model_type: str, name: str) -> str:
    return os.path.join(str(shelf.root), model_type, *name.split("/"))


# -- the stand-in itself mirrors ComfyUI's trap ----------------------------------------


def test_a_vanished_folder_of_comfyui_is_survived_and_named(
    comfy: Comfy, bridge: FolderPathsBridge, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fp = comfy.folder_paths
    extra = tmp_path / "drive" / "loras"  # an extra_model_paths.yaml folder on a USB drive
    write_model(extra / "x.safetensors")
    fp.add_model_folder_path("loras", str(extra))
    assert fp.get_filename_list("loras") == ["x.safetensors"]
    extra.parent.rename(tmp_path / "drive-gone")
    with caplog.at_level(logging.WARNING, "model_shelf"):
        assert fp.get_filename_list("loras") == []
        assert fp.get_filename_list("loras") == []
    assert [r.getMessage() for r in caplog.records] == [
        f"Model Shelf: folder(s) of 'loras' vanished: {extra}; ComfyUI lists the rest"
    ]


def test_stand_in_raises_for_a_vanished_cached_folder(comfy: Comfy, tmp_path: Path) -> None:
    fp = comfy.folder_paths
    extra = tmp_path / "drive" / "loras"
    write_model(extra / "x.safetensors")
    fp.add_model_folder_path("loras", str(extra))
    assert fp.get_filename_list("loras") == ["x.safetensors"]
    extra.parent.rename(tmp_path / "drive-gone")
    with pytest.raises(FileNotFoundError):
        fp.get_filename_list("loras")
    fp.filename_list_cache.pop("loras")
    assert fp.get_filename_list("loras") == []


# -- registration and lookups ----------------------------------------------------------


def test_library_models_are_listed_and_resolved(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, tmp_path: Path
) -> None:
    fp = comfy.folder_paths
    add_model(shelf, tmp_path, "sdxl/base.safetensors")
    add_model(shelf, tmp_path, "detail.safetensors", "loras")
    write_model(comfy.models / "checkpoints" / "own.safetensors")
    bridge.refresh()

    assert fp.get_folder_paths("checkpoints") == [  # appended: ComfyUI's own folder first
        str(comfy.models / "checkpoints"),
        os.path.join(str(shelf.root), "checkpoints"),
    ]
    assert fp.get_filename_list("checkpoints") == ["own.safetensors", "sdxl/base.safetensors"]
    assert fp.get_filename_list("loras") == ["detail.safetensors"]
    assert fp.get_full_path("checkpoints", "sdxl/base.safetensors") == lib_path(
        shelf, "checkpoints", "sdxl/base.safetensors"
    )
    assert fp.get_full_path_or_raise("loras", "detail.safetensors") == lib_path(
        shelf, "loras", "detail.safetensors"
    )
    assert fp.get_full_path("checkpoints", "own.safetensors") == str(
        comfy.models / "checkpoints" / "own.safetensors"
    )
    # ComfyUI's own answer for what nobody has is unchanged.
    assert fp.get_full_path("checkpoints", "nope.safetensors") is None
    with pytest.raises(FileNotFoundError):
        fp.get_full_path_or_raise("checkpoints", "nope.safetensors")


def test_comfy_folders_keep_priority(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, tmp_path: Path
) -> None:
    fp = comfy.folder_paths
    add_model(shelf, tmp_path, "same.safetensors")
    bridge.refresh()
    assert fp.get_full_path("checkpoints", "same.safetensors") == lib_path(
        shelf, "checkpoints", "same.safetensors"
    )
    mine = write_model(comfy.models / "checkpoints" / "same.safetensors")
    assert fp.get_full_path("checkpoints", "same.safetensors") == str(mine)
    # Even a dangling link in ComfyUI's folder is ComfyUI's to judge (it warns, then goes on).
    mine.unlink()
    mine.symlink_to(tmp_path / "nowhere.safetensors")
    assert fp.get_full_path("checkpoints", "same.safetensors") == lib_path(
        shelf, "checkpoints", "same.safetensors"
    )


def test_bare_filename_alias_and_hash_resolve(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, tmp_path: Path
) -> None:
    fp = comfy.folder_paths
    record = add_model(
        shelf, tmp_path, "sdxl/juggernaut.safetensors", aliases=("Juggernaut_XL_v9.safetensors",)
    )
    bridge.refresh()
    expected = lib_path(shelf, "checkpoints", "sdxl/juggernaut.safetensors")
    assert record.sha256 is not None and record.hashes.get("blake3") is not None
    sha_hex = record.sha256.split(":")[1]
    for query in (
        "juggernaut.safetensors",  # bare filename, model in a subfolder
        "other-folder/juggernaut.safetensors",  # a workflow from a machine with other folders
        "juggernaut_xl_v9.safetensors",  # alias, any case
        "Juggernaut_XL_v9.safetensors",
        record.sha256,  # sha256:<hex>
        sha_hex[:12],  # a hash prefix
        record.hashes["blake3"][:20],  # blake3:<prefix>
        "sdxl\\juggernaut.safetensors",  # a Windows-made workflow
    ):
        assert fp.get_full_path("checkpoints", query) == expected, query
    assert fp.get_full_path("loras", "juggernaut.safetensors") is None  # other type
    assert fp.get_full_path("checkpoints", "deadbeef") is None


def test_ambiguous_names_resolve_to_nothing_and_are_logged_once(
    comfy: Comfy,
    shelf: Shelf,
    bridge: FolderPathsBridge,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    add_model(shelf, tmp_path, "a/model.safetensors")
    add_model(shelf, tmp_path, "b/model.safetensors")
    bridge.refresh()
    with caplog.at_level(logging.WARNING, "model_shelf"):
        assert comfy.folder_paths.get_full_path("checkpoints", "model.safetensors") is None
        assert comfy.folder_paths.get_full_path("checkpoints", "model.safetensors") is None
    assert [r.message for r in caplog.records].count(
        "Model Shelf: 'model.safetensors' in checkpoints matches several library models "
        "(a/model.safetensors, b/model.safetensors); not guessing"
    ) == 1


def test_legacy_folder_names(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, tmp_path: Path
) -> None:
    add_model(shelf, tmp_path, "flux/dev.safetensors", "diffusion_models")
    add_model(shelf, tmp_path, "t5.safetensors", "text_encoders")
    bridge.refresh()
    fp = comfy.folder_paths
    assert fp.get_full_path("unet", "flux/dev.safetensors") == lib_path(
        shelf, "diffusion_models", "flux/dev.safetensors"
    )
    assert fp.get_full_path("unet", "dev.safetensors") == lib_path(
        shelf, "diffusion_models", "flux/dev.safetensors"
    )
    assert fp.get_filename_list("clip") == ["t5.safetensors"]


def test_usage_is_counted_off_the_hot_path(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, usage: UsageRecorder, tmp_path: Path
) -> None:
    add_model(shelf, tmp_path, "sub/used.safetensors", aliases=("used-alias.safetensors",))
    add_model(shelf, tmp_path, "idle.safetensors")
    bridge.refresh()
    fp = comfy.folder_paths
    fp.get_full_path("checkpoints", "sub/used.safetensors")
    fp.get_full_path("checkpoints", "used.safetensors")
    fp.get_full_path_or_raise("checkpoints", "used-alias.safetensors")
    assert shelf.find("sub/used.safetensors").usage.count == 0  # nothing written yet
    assert usage.flush() == 1
    used = shelf.find("sub/used.safetensors")
    assert used.usage.count == 3 and used.usage.last_used is not None
    sidecar = shelf.records.read(shelf.records.sidecar_path(used))
    assert sidecar.usage.count == 3
    assert shelf.find("idle.safetensors").usage.count == 0
    assert usage.flush() == 0


def test_resolution_creates_no_link(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, tmp_path: Path
) -> None:
    names = ["a.safetensors", "sub/b.safetensors", "deep/er/c.safetensors"]
    records = [add_model(shelf, tmp_path, n, aliases=(f"alias-{i}",)) for i, n in enumerate(names)]
    bridge.refresh()
    fp = comfy.folder_paths
    for i, record in enumerate(records):
        for query in (record.name, record.name.rpartition("/")[2], f"alias-{i}", record.sha256):
            assert fp.get_full_path("checkpoints", query) is not None
        fp.get_filename_list("checkpoints")
    for folder, dirs, files in os.walk(tmp_path):
        for entry in dirs + files:
            assert not Path(folder, entry).is_symlink(), Path(folder, entry)
    for record in records:  # imported by copy: one name per file, no hardlink made since
        for path in shelf.records.file_paths(record):
            assert path.stat().st_nlink == 1, path
    assert not any(p.is_symlink() for p in comfy.models.rglob("*")) and not list(
        comfy.models.rglob("*.safetensors")
    )


# -- chaining with other packs -------------------------------------------------------


def test_a_pack_wrapper_installed_before_us_still_runs(
    comfy: Comfy, shelf: Shelf, make_bridge: Callable[..., FolderPathsBridge], tmp_path: Path
) -> None:
    fp = comfy.folder_paths
    calls: list[tuple[str, str]] = []
    comfy_own = fp.get_full_path

    def other_pack(folder_name: str, filename: str) -> str | None:  # no functools.wraps
        calls.append((folder_name, filename))
        if filename == "redirected.safetensors":
            return "/elsewhere/redirected.safetensors"
        return comfy_own(folder_name, filename)

    fp.get_full_path = other_pack
    add_model(shelf, tmp_path, "sub/lib.safetensors", aliases=("lib-alias",))
    make_bridge()

    assert fp.get_full_path("checkpoints", "sub/lib.safetensors") == lib_path(
        shelf, "checkpoints", "sub/lib.safetensors"
    )
    assert fp.get_full_path("checkpoints", "lib-alias") == lib_path(
        shelf, "checkpoints", "sub/lib.safetensors"
    )
    assert fp.get_full_path("checkpoints", "redirected.safetensors") == (
        "/elsewhere/redirected.safetensors"
    )
    assert calls == [
        ("checkpoints", "sub/lib.safetensors"),
        ("checkpoints", "lib-alias"),
        ("checkpoints", "redirected.safetensors"),
    ]


def test_install_is_idempotent_and_a_later_pack_can_wrap_us(
    comfy: Comfy, shelf: Shelf, make_bridge: Callable[..., FolderPathsBridge], tmp_path: Path
) -> None:
    fp = comfy.folder_paths
    add_model(shelf, tmp_path, "x.safetensors", aliases=("x-alias",))
    first = make_bridge()
    ours = fp.get_full_path
    seen: list[str] = []

    def later_pack(folder_name: str, filename: str) -> str | None:
        seen.append(filename)
        return ours(folder_name, filename)

    later_pack.__wrapped__ = ours  # type: ignore[attr-defined]  # as functools.wraps sets it
    fp.get_full_path = later_pack

    second = make_bridge()  # a second install finds our wrapper inside the later pack's
    assert fp.get_full_path is later_pack
    assert getattr(ours, HOOK_MARK).bridge is second
    hooks = install_hooks(fp)
    assert hooks.full_path is getattr(ours, HOOK_MARK)
    assert fp.get_full_path("checkpoints", "x-alias") == lib_path(
        shelf, "checkpoints", "x.safetensors"
    )
    assert seen == ["x-alias"]
    assert (
        fp.get_folder_paths("checkpoints").count(os.path.join(str(shelf.root), "checkpoints")) == 1
    )
    first.close()  # closing a replaced bridge leaves the new one in charge
    assert getattr(ours, HOOK_MARK).bridge is second


def test_closed_bridge_passes_through(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, tmp_path: Path
) -> None:
    add_model(shelf, tmp_path, "sub/x.safetensors")
    bridge.refresh()
    fp = comfy.folder_paths
    assert fp.get_full_path("checkpoints", "x.safetensors") is not None
    bridge.close()
    assert fp.get_full_path("checkpoints", "x.safetensors") is None
    assert fp.get_filename_list("checkpoints") == []
    assert os.path.join(str(shelf.root), "checkpoints") not in fp.get_folder_paths("checkpoints")


def test_extra_model_paths_entry_for_the_same_folder_is_respected(
    comfy: Comfy, shelf: Shelf, make_bridge: Callable[..., FolderPathsBridge], tmp_path: Path
) -> None:
    fp = comfy.folder_paths
    folder = os.path.join(str(shelf.root), "loras")
    fp.add_model_folder_path("loras", folder, is_default=True)  # as the yaml loader would
    add_model(shelf, tmp_path, "style.safetensors", "loras")
    bridge = make_bridge()
    assert fp.get_folder_paths("loras") == [folder, str(comfy.models / "loras")]
    assert fp.get_full_path("loras", "style.safetensors") == os.path.join(
        folder, "style.safetensors"
    )
    bridge.root_changed(False)
    assert fp.get_folder_paths("loras") == [folder, str(comfy.models / "loras")]


def test_types_this_comfyui_does_not_know_are_left_out(
    comfy: Comfy, make_bridge: Callable[..., FolderPathsBridge]
) -> None:
    fp = comfy.folder_paths
    del fp.folder_names_and_paths["audio_encoders"]  # as in ComfyUI before Aug 2025
    bridge = make_bridge()
    assert "audio_encoders" not in fp.folder_names_and_paths
    assert "audio_encoders" not in bridge.types and "checkpoints" in bridge.types


def test_folders_registered_before_the_library_opened_are_taken_over(
    comfy: Comfy, shelf: Shelf, usage: UsageRecorder, tmp_path: Path
) -> None:
    """`register_folders` (ComfyUI's thread, before the library opens) then the bridge: the
    folders are listed once, withdrawn by the bridge, and nothing new is announced."""
    fp = comfy.folder_paths
    add_model(shelf, tmp_path, "sub/early.safetensors")
    early = register_folders(fp, library_folders(shelf.root, fp, ComfySettings()))
    ours = os.path.join(str(shelf.root), "checkpoints")
    assert early["checkpoints"] == ours
    assert fp.get_folder_paths("checkpoints") == [str(comfy.models / "checkpoints"), ours]
    assert fp.get_filename_list("checkpoints") == ["sub/early.safetensors"]  # ComfyUI's walk
    announced: list[bool] = []
    bridge = FolderPathsBridge(
        shelf,
        fp,
        ComfySettings(),
        usage,
        registered=early,
        on_register=lambda: announced.append(True),
    )
    bridge.install()
    try:
        assert fp.get_folder_paths("checkpoints") == [str(comfy.models / "checkpoints"), ours]
        assert fp.get_full_path("checkpoints", "early.safetensors") == lib_path(
            shelf, "checkpoints", "sub/early.safetensors"
        )
        assert announced == []
        bridge.root_changed(False)
        bridge.root_changed(True)  # the root came back: ComfyUI's scans have not seen it
        assert announced == [True]
    finally:
        bridge.close()
    assert ours not in fp.get_folder_paths("checkpoints")


def test_early_folders_of_a_missing_root_are_withdrawn_by_the_bridge(
    comfy: Comfy, tmp_path: Path, usage: UsageRecorder, shelf: Shelf
) -> None:
    fp = comfy.folder_paths
    early = register_folders(fp, library_folders(shelf.root, fp, ComfySettings()))
    (Path(str(shelf.root)) / ".shelf").rename(tmp_path / "state-elsewhere")  # root not usable
    bridge = FolderPathsBridge(shelf, fp, ComfySettings(), usage, registered=early)
    bridge.install()
    try:
        assert not bridge.available
        assert early["vae"] not in fp.get_folder_paths("vae")
    finally:
        bridge.close()
        (tmp_path / "state-elsewhere").rename(Path(str(shelf.root)) / ".shelf")


def test_register_folders_leaves_a_folder_the_user_lists(comfy: Comfy, tmp_path: Path) -> None:
    fp = comfy.folder_paths
    root = tmp_path / "root"
    fp.add_model_folder_path("loras", str(root / "loras"))  # extra_model_paths.yaml
    added = register_folders(fp, library_folders(root, fp, ComfySettings(hide_types=["vae"])))
    assert "loras" not in added and "vae" not in added and "checkpoints" in added
    withdraw_folders(fp, added)
    assert str(root / "loras") in fp.get_folder_paths("loras")
    assert str(root / "checkpoints") not in fp.get_folder_paths("checkpoints")


# -- per-install filter ------------------------------------------------------------------


def test_hidden_types_and_tags(
    comfy: Comfy, shelf: Shelf, make_bridge: Callable[..., FolderPathsBridge], tmp_path: Path
) -> None:
    fp = comfy.folder_paths
    add_model(shelf, tmp_path, "style.safetensors", "loras")
    add_model(shelf, tmp_path, "ok.safetensors")
    add_model(shelf, tmp_path, "sub/spicy.safetensors", tags=("NSFW",), aliases=("spice",))
    add_model(shelf, tmp_path, "shared.safetensors", tags=("nsfw",))
    own = write_model(comfy.models / "checkpoints" / "shared.safetensors")
    make_bridge(ComfySettings(hide_types=["loras"], hide_tags=["nsfw"]))

    assert os.path.join(str(shelf.root), "loras") not in fp.get_folder_paths("loras")
    assert fp.get_filename_list("loras") == []
    assert fp.get_full_path("loras", "style.safetensors") is None
    assert fp.get_filename_list("checkpoints") == ["ok.safetensors", "shared.safetensors"]
    for query in ("sub/spicy.safetensors", "spicy.safetensors", "spice"):
        assert fp.get_full_path("checkpoints", query) is None, query
    assert fp.get_full_path("checkpoints", "shared.safetensors") == str(own)


# -- changes without a restart ---------------------------------------------------------


def test_refresh_drops_comfy_cache_even_when_mtimes_do_not_move(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, tmp_path: Path
) -> None:
    """On a share with coarse mtimes ComfyUI's cache cannot see a change; our refresh can."""
    fp = comfy.folder_paths
    folder = Path(str(shelf.root)) / "checkpoints"
    assert fp.get_filename_list("checkpoints") == []
    before = folder.stat()
    add_model(shelf, tmp_path, "new.safetensors")
    os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert fp.get_filename_list("checkpoints") == []  # ComfyUI alone: stale
    bridge.refresh(["checkpoints"])
    assert fp.get_filename_list("checkpoints") == ["new.safetensors"]


def test_new_renamed_and_removed_models_follow_without_restart(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, watched: Notices, tmp_path: Path
) -> None:
    fp = comfy.folder_paths
    add_model(shelf, tmp_path, "sub/one.safetensors", aliases=("first",))
    other = Shelf(shelf.root)  # a second opener: another process, as far as SQLite can tell
    try:
        source = write_model(tmp_path / "incoming" / "two.safetensors")
        other.import_model(source, "checkpoints", name="two.safetensors")
        watched.wait_until(
            lambda: (
                fp.get_filename_list("checkpoints") == ["sub/one.safetensors", "two.safetensors"]
                and fp.get_full_path("checkpoints", "first") is not None
            ),
            "the other opener's import",
        )

        # Renamed by hand (both files): listings follow, and so do the records.
        old = Path(lib_path(shelf, "checkpoints", "two.safetensors"))
        old.rename(old.with_name("deux.safetensors"))
        sidecar = shelf.layout.sidecar_for(old)
        sidecar.rename(shelf.layout.sidecar_for(old.with_name("deux.safetensors")))
        watched.wait_until(
            lambda: (
                fp.get_filename_list("checkpoints") == ["deux.safetensors", "sub/one.safetensors"]
                and shelf.index.get_at("checkpoints", "deux.safetensors") is not None
            ),
            "the rename",
        )
        assert fp.get_full_path("checkpoints", "two.safetensors") is None
        assert shelf.find("deux.safetensors").name == "deux.safetensors"

        other.remove("sub/one.safetensors")
        watched.wait_until(
            lambda: (
                fp.get_filename_list("checkpoints") == ["deux.safetensors"]
                and fp.get_full_path("checkpoints", "first") is None
            ),
            "the other opener's removal",
        )
    finally:
        other.close()


# -- the root going away ---------------------------------------------------------------


def test_vanished_root_is_withdrawn_and_comes_back(
    comfy: Comfy,
    shelf: Shelf,
    bridge: FolderPathsBridge,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("model_shelf.library.watch.ROOT_CHECK_SECONDS", 0.1)
    fp = comfy.folder_paths
    add_model(shelf, tmp_path, "lib.safetensors", aliases=("lib-alias",))
    add_model(shelf, tmp_path, "lib-lora.safetensors", "loras")
    own = write_model(comfy.models / "loras" / "own.safetensors")
    notices = Notices()
    watcher = shelf.start_watching(QUICK_WATCH)
    watcher.subscribe(bridge)
    watcher.subscribe(notices)
    assert watcher.wait_idle(WAIT_SECONDS)
    bridge.refresh()
    assert fp.get_filename_list("checkpoints") == ["lib.safetensors"]  # now cached by ComfyUI
    assert fp.get_filename_list("loras") == ["lib-lora.safetensors", "own.safetensors"]
    root = Path(str(shelf.root))
    ours = os.path.join(str(root), "checkpoints")

    try:
        with caplog.at_level(logging.INFO, "model_shelf"):
            root.rename(tmp_path / "unplugged")
            # Before the watcher notices: ComfyUI's trap is caught, nothing raises.
            assert fp.get_filename_list("checkpoints") == []
            assert fp.get_filename_list("loras") == ["own.safetensors"]
            assert fp.get_full_path("checkpoints", "lib.safetensors") is None
            assert fp.get_full_path("checkpoints", "lib-alias") is None
            assert fp.get_full_path("loras", "own.safetensors") == str(own)
            notices.wait_until(lambda: notices.roots == [False], "the root to be missed")
            assert ours not in fp.get_folder_paths("checkpoints")
            assert fp.get_filename_list("vae") == []
            said = [
                r.getMessage()
                for r in caplog.records
                if r.levelno >= logging.WARNING and r.name.endswith("comfy_paths")
            ]
            assert len(said) == 1 and "is gone" in said[0]  # the bridge says it once

            (tmp_path / "unplugged").rename(root)
            notices.wait_until(  # everything may have changed meanwhile
                lambda: frozenset(MODEL_TYPES) in notices.changed, "every type to be refreshed"
            )
            assert notices.roots == [False, True]
    finally:
        shelf.stop_watching()
    assert ours in fp.get_folder_paths("checkpoints")
    assert fp.get_filename_list("checkpoints") == ["lib.safetensors"]
    assert fp.get_full_path("checkpoints", "lib-alias") == lib_path(
        shelf, "checkpoints", "lib.safetensors"
    )
    assert sum("is available" in r.getMessage() for r in caplog.records) == 1


# -- failures stay inside ------------------------------------------------------------------


def test_index_errors_fall_back_to_comfy_answer(
    comfy: Comfy,
    shelf: Shelf,
    bridge: FolderPathsBridge,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = add_model(shelf, tmp_path, "x.safetensors")
    bridge.refresh()

    def broken(*_args: object) -> None:
        raise IndexStoreError("index is on fire")

    monkeypatch.setattr(shelf.index, "by_hash", broken)
    monkeypatch.setattr(shelf.index, "name_rows", broken)
    fp = comfy.folder_paths
    assert fp.get_full_path("checkpoints", record.sha256) is None
    with pytest.raises(IndexStoreError):
        bridge.refresh()  # the old tables stay in use
    assert fp.get_full_path("checkpoints", "x.safetensors") == lib_path(
        shelf, "checkpoints", "x.safetensors"
    )


def test_a_bug_in_our_code_is_logged_once_and_comfy_answers(
    comfy: Comfy,
    shelf: Shelf,
    bridge: FolderPathsBridge,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    add_model(shelf, tmp_path, "x.safetensors")
    bridge.refresh()

    def bug(*_args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(bridge, "direct_lookup", bug)
    monkeypatch.setattr(bridge, "after_lookup", bug)
    monkeypatch.setattr(bridge, "build_listing", bug)
    fp = comfy.folder_paths
    with caplog.at_level(logging.ERROR, "model_shelf"):
        for _ in range(3):
            assert fp.get_full_path("checkpoints", "x.safetensors") == lib_path(
                shelf, "checkpoints", "x.safetensors"
            )
            fp.filename_list_cache.clear()
            assert fp.get_filename_list("checkpoints") == ["x.safetensors"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # once for get_full_path, once for get_filename_list_
    assert all(r.exc_info for r in errors)


# -- our faster listing gives ComfyUI's answer ---------------------------------------------


def build_odd_tree(folder: Path, tmp_path: Path) -> None:
    for name in (
        "a.safetensors",
        "B.CKPT",
        "notes.txt",
        "noext",
        ".hidden.pt",
        "x.safetensors.shelf.json",
        "sub/c.pth",
        "sub/deeper/d.sft",
        "v1.5/e.bin",
        ".git/objects/f.safetensors",
        "sub/.git/g.safetensors",
    ):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "linked.safetensors").write_bytes(b"x")
    (folder / "link-dir").symlink_to(outside, target_is_directory=True)
    (folder / "dangling.safetensors").symlink_to(tmp_path / "missing")


MODEL_EXTS = {".safetensors", ".ckpt", ".pth", ".sft", ".bin", ".pt"}


@pytest.mark.parametrize("extensions", [MODEL_EXTS, {""}, set()], ids=["models", "none", "any"])
def test_our_listing_matches_comfy_algorithm(
    comfy: Comfy, tmp_path: Path, extensions: set[str]
) -> None:
    folder = tmp_path / "lib-like"
    build_odd_tree(folder, tmp_path)
    fp = comfy.folder_paths
    files, mtimes = fp.recursive_search(str(folder), excluded_dir_names=[".git"])
    names, our_mtimes = walk_model_folder(str(folder), extensions)
    assert sorted(names) == fp.filter_files_extensions(files, extensions)
    assert our_mtimes == mtimes
    assert walk_model_folder(str(tmp_path / "missing"), extensions) == ([], {})


def test_hooked_listing_equals_comfy_listing(
    comfy: Comfy, shelf: Shelf, bridge: FolderPathsBridge, tmp_path: Path
) -> None:
    fp = comfy.folder_paths
    build_odd_tree(Path(str(shelf.root)) / "checkpoints", tmp_path)
    write_model(comfy.models / "checkpoints" / "mine.safetensors")
    ours = fp.get_filename_list_("checkpoints")
    comfy_own = fp.get_filename_list_.__wrapped__("checkpoints")
    assert ours[0] == comfy_own[0] and ours[1] == comfy_own[1]
    assert "mine.safetensors" in ours[0] and "sub/deeper/d.sft" in ours[0]
