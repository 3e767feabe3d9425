"""The Fetch Model node, run as ComfyUI runs a node (its worker thread, ``comfy.utils``'s
ProgressBar with ``main.py``'s hook, ``comfy.model_management``'s cancel flag: stand-ins of
0.3.64), over a real library, a real download engine and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from comfy_stubs import execution
from downloads_support import LOOPBACK_FETCHES, MIB, EngineThread, quick_settings, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.downloads import ControlRequest, TaskState
from model_shelf.library.errors import DownloadFailedError, LibraryNotReadyError
from model_shelf.nodes import NODE_CLASS_MAPPINGS, runtime
from model_shelf.nodes.fetch_model import FetchModel
from model_shelf.nodes.types import ANY

pytest_plugins = ["comfy_stubs.fixtures"]


class Page:
    """Stands in for ``PromptServer.instance`` as the progress hook sees it."""

    client_id = "page-1"

    def __init__(self) -> None:
        self.progress: list[dict[str, Any]] = []

    def send_sync(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        if event == "progress":
            self.progress.append(data)


@pytest.fixture
def remote() -> Iterator[RemoteServer]:
    with RemoteServer() as server:
        yield server


@pytest.fixture
def library(tmp_path: Path) -> Iterator[Shelf]:
    settings = quick_settings(allowed_fetch_hosts=LOOPBACK_FETCHES)  # the node's sources
    with Shelf.open(tmp_path / "library", settings) as shelf:
        yield shelf


@pytest.fixture
def page(library: Shelf, comfy_core: ModuleType) -> Iterator[Page]:
    """The node bound to ``library`` as ``comfy_entry`` binds it, with ComfyUI's hook set."""
    page = Page()
    execution.hijack_progress(page)
    unbind = runtime.bind(lambda: runtime.NodeContext(library))
    try:
        yield page
    finally:
        unbind()


def test_declares_a_comfyui_node() -> None:
    assert NODE_CLASS_MAPPINGS["ModelShelfFetchModel"] is FetchModel
    inputs = FetchModel.INPUT_TYPES()
    assert inputs["required"]["source"][0] == "STRING"
    assert "checkpoints" in inputs["required"]["type"][0]
    assert set(inputs["optional"]) == {"name", "sha256"}
    assert FetchModel.RETURN_TYPES == (ANY,) and FetchModel.RETURN_NAMES == ("model_name",)
    # its output links into any loader's file-name combo (validation's "any" check)
    assert execution.validate_node_input(ANY, ["a.safetensors", "b.safetensors"])
    assert not execution.validate_node_input("MODEL", ["a.safetensors"])


def test_without_a_running_library_it_says_so() -> None:
    with pytest.raises(LibraryNotReadyError, match="not open"):
        FetchModel().fetch("https://example.com/x.safetensors", "loras")


def test_a_model_in_the_library_is_not_downloaded_again(
    library: Shelf, page: Page, remote: RemoteServer, tmp_path: Path
) -> None:
    # by sha256: the source is never asked (it does not even exist)
    held = write_model_file(tmp_path / "incoming" / "held.safetensors", 1 * MIB, seed=1)
    digest = sha256_of(held)
    library.import_model(held, "checkpoints", ImportMode.COPY, name="mine/held.safetensors")
    (name,) = FetchModel().fetch(
        "http://127.0.0.1:9/nowhere.safetensors", "checkpoints", "", digest
    )
    assert name == "mine/held.safetensors"

    # by name: the file name the source ends with
    named = write_model_file(tmp_path / "incoming" / "style.safetensors", 1 * MIB, seed=2)
    library.import_model(named, "loras", ImportMode.COPY)
    (name,) = FetchModel().fetch(remote.url("style.safetensors"), "loras")
    assert name == "style.safetensors"
    assert not remote.files  # nothing served, nothing asked

    # by source: downloaded once, then found by where it came from (under another name)
    src = write_model_file(tmp_path / "remote" / "detail.safetensors", 2 * MIB, seed=3)
    served = remote.serve("detail.safetensors", src)
    with EngineThread(library):
        (first,) = FetchModel().fetch(remote.url("detail.safetensors"), "loras", "kept/dt")
        (second,) = FetchModel().fetch(remote.url("detail.safetensors"), "loras", "")
    assert first == second == "kept/dt.safetensors"
    assert len(served.requests) == 1


def test_a_missing_model_is_downloaded_with_a_progress_bar(
    library: Shelf, page: Page, remote: RemoteServer, tmp_path: Path
) -> None:
    src = write_model_file(tmp_path / "remote" / "4x-ultra.pth.safetensors", 12 * MIB, seed=4)
    served = remote.serve("4x-ultra.safetensors", src)
    with EngineThread(library):
        (name,) = FetchModel().fetch(
            remote.url("4x-ultra.safetensors"), "upscale_models", "", sha256_of(src)
        )
    assert name == "4x-ultra.safetensors"
    path = library.root / "upscale_models" / name
    assert sha256_of(path) == sha256_of(src)
    assert served.bytes_sent == src.stat().st_size
    assert page.progress and page.progress[-1]["value"] == page.progress[-1]["max"]
    assert page.progress[-1]["max"] == src.stat().st_size


def test_a_wrong_file_is_refused(
    library: Shelf, page: Page, remote: RemoteServer, tmp_path: Path
) -> None:
    src = write_model_file(tmp_path / "remote" / "x.safetensors", 1 * MIB, seed=5)
    remote.serve("x.safetensors", src)
    with EngineThread(library), pytest.raises(DownloadFailedError, match="HASH_MISMATCH"):
        FetchModel().fetch(remote.url("x.safetensors"), "vae", "", "ab" * 32)
    assert not (library.root / "vae" / "x.safetensors").exists()


def test_cancelling_the_run_pauses_the_download_and_running_again_resumes_it(
    library: Shelf, page: Page, remote: RemoteServer, tmp_path: Path, comfy_core: ModuleType
) -> None:
    size = 64 * MIB
    src = write_model_file(tmp_path / "remote" / "flux.safetensors", size, seed=6)
    served = remote.serve("flux.safetensors", src, hold_at_byte=8 * MIB, drop_after_hold=True)
    outcome: dict[str, BaseException] = {}

    def run_node() -> None:
        try:
            FetchModel().fetch(remote.url("flux.safetensors"), "diffusion_models")
        except BaseException as exc:  # what ComfyUI's executor would get
            outcome["raised"] = exc

    with EngineThread(library) as engine:
        worker = threading.Thread(target=run_node, name="test-comfy-worker")
        worker.start()
        task = wait_until(lambda: next(iter(library.downloads.list()), None), 30, "the task")
        partial = library.layout.partial_dir / f"{task.id}.part"
        wait_until(lambda: partial.exists() and partial.stat().st_size >= 4 * MIB, 60, "4 MiB")
        comfy_core.model_management.interrupt_current_processing(True)  # /interrupt
        worker.join(30)
        interrupted = comfy_core.model_management.InterruptProcessingException
        assert isinstance(outcome.get("raised"), interrupted)
        assert not comfy_core.model_management.processing_interrupted()  # flag consumed
        paused = engine.wait_for(task.id, "paused")
        served.behaviour.release.set()
        assert partial.stat().st_size == paused.bytes_done >= 4 * MIB

        served.behaviour.hold_at_byte = None
        (name,) = FetchModel().fetch(remote.url("flux.safetensors"), "diffusion_models")
    assert name == "flux.safetensors"
    assert sha256_of(library.root / "diffusion_models" / name) == sha256_of(src)
    assert served.requests[-1].headers["Range"] == f"bytes={paused.bytes_done}-"
    assert served.bytes_sent < 1.1 * size


def test_is_changed_follows_the_inputs_and_the_model(
    library: Shelf, page: Page, tmp_path: Path
) -> None:
    held = write_model_file(tmp_path / "incoming" / "held.safetensors", 1 * MIB, seed=7)
    record = library.import_model(held, "vae", ImportMode.COPY)
    url = "https://example.com/models/held.safetensors"
    first = FetchModel.IS_CHANGED(url, "vae")
    assert FetchModel.IS_CHANGED(url, "vae") == first
    assert FetchModel.IS_CHANGED(url, "vae", sha256="cd" * 32) != first
    library.remove_model(record.id)
    assert FetchModel.IS_CHANGED(url, "vae") != first  # gone: the node runs again


def test_a_pause_still_pending_is_withdrawn_when_the_model_is_asked_again(
    library: Shelf, page: Page
) -> None:
    """A cancelled run's wait asks the running download to pause; if the run is started again
    before the engine got to it, the model is wanted again: the pause is withdrawn."""
    url = "http://127.0.0.1:9/pending.safetensors"
    task = library.downloads.add(url, "loras")
    library.downloads.store.update(  # as the engine leaves it while it downloads
        task.id,
        state=TaskState.DOWNLOADING,
        lease_owner="elsewhere|1|engine",
        lease_expires_at=time.time() + 60,
    )
    pending = library.downloads.pause(task.id)
    assert pending.state is TaskState.DOWNLOADING and pending.control is ControlRequest.PAUSE

    again = library.fetcher.request(url, "loras")

    assert again.id == task.id and again.control is None
    assert again.state is TaskState.DOWNLOADING
