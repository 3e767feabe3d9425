"""The sidebar in headless Chromium (Debian's ``chromium``, driven by Playwright).

The page is a stand-in of ComfyUI's (``tests/web_host``): it loads every ``.js`` under ``web/``
as an extension, as ComfyUI does, and our routes are mounted on the ``PromptServer`` stand-in
on a real library; downloads come from a real file server on 127.0.0.1. One test runs the
standalone page of ``serve`` instead. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from comfy_stubs import safetensors_bytes
from downloads_support import quick_settings
from remote_server import RemoteServer, write_model_file
from routes_support import ThreadedApp
from web_host.host import SLOW_QUERY, make_host_app

from model_shelf.library import ImportMode, ModelRecord, Shelf
from model_shelf.library.records import HashState, Health
from model_shelf.server_routes import standalone_app

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shelf(tmp_path: Path) -> Iterator[Shelf]:
    with Shelf.open(tmp_path / "library", quick_settings()) as opened:
        yield opened


@pytest.fixture
def host(shelf: Shelf, tmp_path: Path) -> Iterator[ThreadedApp]:
    """The stand-in ComfyUI page and our routes, served from a thread."""

    async def make() -> Any:
        return await make_host_app(shelf, tmp_path / "ComfyUI")

    with ThreadedApp(make, "test-web-host") as server:
        yield server


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def add(shelf: Shelf, tmp_path: Path, name: str, model_type: str, size: int = 4096) -> ModelRecord:
    source = write_model_file(tmp_path / "incoming" / Path(name).name, size, seed=len(name))
    return shelf.import_model(source, model_type, ImportMode.MOVE, name=name)


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def open_tab(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    assert page.evaluate("window.__extensionErrors ?? []") == []
    button = page.locator("[data-tab=model-shelf]")
    assert button.get_attribute("aria-label") == "Model Shelf"
    assert button.locator("i").get_attribute("class") == "pi pi-box"
    button.click()
    page.wait_for_selector("[data-testid=model-shelf-panel]")


def row_names(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "[data-testid=model-row]:not([hidden])",
        "rows => rows.filter(r => r.dataset.id).map(r => r.querySelector('.ms-model-name').title)",
    )


def wait_rows(page: Any, expected: list[str]) -> None:
    """Wait until the list shows exactly ``expected`` (in any order); the count above it can
    change a frame before the virtual list draws its rows."""
    page.wait_for_function(
        """expected => {
            const rows = [...document.querySelectorAll("[data-testid=model-row]:not([hidden])")]
                .filter(r => r.dataset.id)
                .map(r => r.querySelector(".ms-model-name").title).sort();
            return JSON.stringify(rows) === JSON.stringify(expected);
        }""",
        arg=sorted(expected),
    )


def test_tab_appears_and_typing_filters(
    host: ThreadedApp, page: Any, shelf: Shelf, tmp_path: Path
) -> None:
    for name, model_type in [
        ("sdxl_base.safetensors", "checkpoints"),
        ("sdxl_vae.safetensors", "vae"),
        ("styles/anime-style.safetensors", "loras"),
        ("detail-tweaker.safetensors", "loras"),
        ("flux-dev.safetensors", "diffusion_models"),
    ]:
        add(shelf, tmp_path, name, model_type)
    open_tab(page, host.url)
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]').textContent === '5 models'"
    )
    shot(page, "01-library")

    search = page.locator("[data-testid=search]")
    search.type(SLOW_QUERY, delay=20)  # this query's answer comes 1.5 s late
    page.wait_for_timeout(400)  # its request is on its way
    search.type("l_v", delay=20)
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]').textContent === '1 model'"
    )
    wait_rows(page, ["vae/sdxl_vae.safetensors"])
    page.wait_for_timeout(1800)  # the late answer to "sdx" has come and gone
    assert row_names(page) == ["vae/sdxl_vae.safetensors"]
    assert page.locator("[data-testid=model-count]").text_content() == "1 model"
    shot(page, "02-search-as-you-type")

    search.fill("")
    page.select_option("[data-filter=type]", "loras")
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]').textContent === '2 models'"
    )
    wait_rows(page, ["loras/detail-tweaker.safetensors", "loras/styles/anime-style.safetensors"])
    page.locator("[data-testid=model-row]:not([hidden])").first.click()
    drawer = page.locator("[data-testid=drawer]")
    drawer.wait_for()
    assert "sha256" in drawer.text_content()
    shot(page, "03-detail-drawer")

    # Closed and opened again, the panel is built anew while the type folders are still on
    # their way from the server: the list and the filter must both say "loras".
    button = page.locator("[data-tab=model-shelf]")
    button.click()
    page.wait_for_selector("[data-testid=model-shelf-panel]", state="detached")
    button.click()
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]')?.textContent === '2 models'"
    )
    wait_rows(page, ["loras/detail-tweaker.safetensors", "loras/styles/anime-style.safetensors"])
    page.wait_for_function("document.querySelector('[data-filter=type]').value === 'loras'")


def test_download_shows_moving_progress_pause_resume_and_the_model(
    host: ThreadedApp, page: Any, shelf: Shelf, tmp_path: Path
) -> None:
    size = 24 * MIB
    with RemoteServer() as remote:
        remote.serve(
            "dl-model.safetensors",
            write_model_file(tmp_path / "remote" / "dl-model.safetensors", size),
            throttle_bytes_per_second=4 * MIB,
        )
        open_tab(page, host.url)
        page.click("[data-view=downloads]")
        page.fill("[data-testid=download-source]", remote.url("dl-model.safetensors"))
        page.select_option("[data-testid=download-type]", "loras")
        page.click("button[title=Add]")
        task = page.locator("[data-testid=task]").first
        task.wait_for()
        progress = task.locator("[data-testid=progress]")
        page.wait_for_function(
            "document.querySelector('[data-testid=progress]').value > 0.05", timeout=30_000
        )
        first = progress.evaluate("bar => bar.value")
        page.wait_for_function(
            f"document.querySelector('[data-testid=progress]').value > {first} + 0.02",
            timeout=30_000,
        )
        assert "MiB/s" in task.text_content()  # speed, and an ETA beside it
        assert "left" in task.text_content()
        shot(page, "04-download-progress")

        task.locator("button[data-action=pause]").click()
        page.wait_for_function(
            "document.querySelector('[data-testid=task] [data-testid=state]').textContent"
            " === 'paused'",
            timeout=30_000,
        )
        paused_at = progress.evaluate("bar => bar.value")
        assert 0 < paused_at < 1
        shot(page, "05-download-paused")
        page.wait_for_timeout(500)
        assert progress.evaluate("bar => bar.value") == paused_at  # it really stopped

        task.locator("button[data-action=resume]").click()
        page.wait_for_function(
            "document.querySelector('[data-testid=task] [data-testid=state]').textContent"
            " === 'done'",
            timeout=60_000,
        )
        page.wait_for_selector(".p-toast-message-success:has-text('Download finished')")
        shot(page, "06-download-done")

    page.click("[data-view=library]")
    page.fill("[data-testid=search]", "dl-model")
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]').textContent === '1 model'"
    )
    wait_rows(page, ["loras/dl-model.safetensors"])  # the rows come a frame after the count
    shot(page, "07-downloaded-model-in-library")
    assert shelf.find("loras/dl-model.safetensors").size == size


def test_drag_a_model_onto_the_canvas_creates_its_loader(
    host: ThreadedApp, page: Any, shelf: Shelf, tmp_path: Path
) -> None:
    add(shelf, tmp_path, "sdxl/base.safetensors", "checkpoints")
    open_tab(page, host.url)
    row = page.locator("[data-testid=model-row]:not([hidden])").first
    row.wait_for()
    page.wait_for_function("document.querySelector('[data-testid=model-row]').dataset.id")
    row.drag_to(page.locator("#graph-canvas"), target_position={"x": 300, "y": 200})
    page.wait_for_function("window.comfyApp.graph._nodes.length === 1")
    node = page.evaluate(
        "(() => { const n = window.comfyApp.graph._nodes[0];"
        " return {type: n.type, pos: n.pos, widgets: n.widgets.map(w => [w.name, w.value])}; })()"
    )
    assert node["type"] == "CheckpointLoaderSimple"
    assert ["ckpt_name", "sdxl/base.safetensors"] in node["widgets"]
    assert abs(node["pos"][0] - 300) < 5 and abs(node["pos"][1] - 200) < 5
    shot(page, "08-dragged-onto-canvas")


def test_drop_a_file_on_the_tab_imports_it(host: ThreadedApp, page: Any, shelf: Shelf) -> None:
    open_tab(page, host.url)
    content = list(safetensors_bytes("dropped"))
    transfer = page.evaluate_handle(
        """(bytes) => {
            const transfer = new DataTransfer();
            const file = new File([new Uint8Array(bytes)], "dropped-lora.safetensors");
            transfer.items.add(file);
            return transfer;
        }""",
        content,
    )
    panel = "[data-testid=model-shelf-panel]"
    for kind in ("dragenter", "dragover", "drop"):
        page.dispatch_event(panel, kind, {"dataTransfer": transfer})
    page.select_option("[data-testid=import-type]", "loras")
    shot(page, "09-drop-import-dialog")
    page.click("[role=dialog] button[title=Import]")
    page.wait_for_selector(".p-toast-message-success:has-text('Imported loras/dropped-lora')")
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]').textContent === '1 model'"
    )
    assert shelf.find("loras/dropped-lora.safetensors").size == len(content)


def test_virtualized_list_of_ten_thousand(host: ThreadedApp, page: Any, shelf: Shelf) -> None:
    records = [
        ModelRecord(
            type="loras",
            name=f"bulk/model-{i:05}.safetensors",
            size=1000 + i,
            hashes={"sha256": f"sha256:{i:064x}"},
            hash_state=HashState.HASHED,
            health=Health.OK,
        )
        for i in range(10_000)
    ]
    shelf.index.upsert_many((r, 0) for r in records)
    open_tab(page, host.url)
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]').textContent === '10,000 models'"
    )
    in_dom = page.locator("[data-testid=model-row]").count()
    assert 10 < in_dom < 100, f"{in_dom} rows in the DOM for 10,000 models"
    page.eval_on_selector(".ms-vlist", "list => { list.scrollTop = list.scrollHeight; }")
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=model-row] .ms-model-name')]"
        ".some(n => n.title === 'loras/bulk/model-09999.safetensors')"
    )
    assert page.locator("[data-testid=model-row]").count() == in_dom  # rows are reused
    shot(page, "10-ten-thousand-models")


def test_a_list_laid_out_before_its_styles_keeps_few_rows(host: ThreadedApp, page: Any) -> None:
    """A list whose box is not yet held to the panel's height (its styles not applied yet, as
    on a slow machine) is as tall as all its rows: it must still make only a window's worth."""
    open_tab(page, host.url)
    rows = page.evaluate(
        """async () => {
          const { VirtualList } = await import("/extensions/model-shelf/common/virtual-list.js");
          const box = document.createElement("div");
          document.body.append(box);
          const list = new VirtualList(box, {
            rowHeight: 44,
            pageSize: 200,
            fetchPage: async (offset, limit) => ({
              total: 10000,
              items: Array.from({ length: limit }, (_, i) => offset + i),
            }),
            createRow: () => document.createElement("div"),
            renderRow: (row, item) => { row.textContent = item ?? ""; },
          });
          // As before its stylesheet applies (no size containment, no scrolling box): as tall
          // as its spacer.
          Object.assign(list.viewport.style, { contain: "none", overflow: "visible" });
          await list.reset();
          await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
          return list.viewport.querySelectorAll(".ms-vlist-row").length;
        }"""
    )
    assert 10 < rows < 100, f"{rows} rows in the DOM for 10,000 items"


def test_health_and_settings_views(
    host: ThreadedApp, page: Any, shelf: Shelf, tmp_path: Path
) -> None:
    record = add(shelf, tmp_path, "broken.safetensors", "vae", size=MIB)
    record.health, record.health_detail = Health.CORRUPTED, "sha256 differs from the record"
    shelf.catalog.save(record)
    open_tab(page, host.url)
    page.click("[data-view=health]")
    section = page.locator("[data-section=corrupted]")
    section.wait_for()
    assert "broken.safetensors" in section.text_content()
    assert section.locator("button[title='Repair all']").count() == 1
    assert page.locator("[data-testid=disk] tr[data-type=vae]").count() == 1
    assert "not checked" in page.locator("[data-testid=swept]").text_content()
    page.click("button[title^='Look at every file now']")
    page.wait_for_selector("[data-testid=swept]:has-text('last checked')")
    assert shelf.health().swept_at is not None
    shot(page, "11-health")

    page.click("[data-view=settings]")
    token = "hf_testtokenthatmustnotshow1234"
    page.fill("input[name=hf_token]", token)
    page.click("[data-testid=settings] button[type=submit]")
    page.wait_for_selector(".p-toast-message-success:has-text('Settings saved')")
    page.wait_for_function(
        "document.querySelector('input[name=hf_token]').placeholder.startsWith('hf_…1234')"
    )
    assert token not in page.content()
    shot(page, "12-settings")
    assert shelf.downloads.settings.hf_token.get_secret_value() == token
    # issue #11: the private hosts a workflow's downloads may reach
    page.fill("input[name=allowed_fetch_hosts]", "Mirror.lan, 10.0.0.5:8080")
    page.click("[data-testid=settings] button[type=submit]")
    page.wait_for_function(
        "document.querySelector('input[name=allowed_fetch_hosts]').value"
        " === 'mirror.lan, 10.0.0.5:8080'"
    )
    assert shelf.downloads.settings.allowed_fetch_hosts == ("mirror.lan", "10.0.0.5:8080")


def test_standalone_page_of_serve(page: Any, shelf: Shelf, tmp_path: Path) -> None:
    add(shelf, tmp_path, "standalone-model.safetensors", "checkpoints")

    async def make() -> Any:
        return standalone_app(shelf)

    with RemoteServer() as remote, ThreadedApp(make, "test-standalone") as server:
        remote.serve("fetched.safetensors", write_model_file(tmp_path / "f.safetensors", MIB))
        page.goto(server.url + "/")
        page.wait_for_selector("[data-testid=model-shelf-panel]")
        page.wait_for_function(
            "document.querySelector('[data-testid=model-count]').textContent === '1 model'"
        )
        shot(page, "13-standalone-page")
        page.click("[data-view=downloads]")
        page.fill("[data-testid=download-source]", remote.url("fetched.safetensors"))
        page.select_option("[data-testid=download-type]", "loras")
        page.click("button[title=Add]")
        # progress arrives over Server-Sent Events here (no ComfyUI websocket)
        page.wait_for_function(
            "document.querySelector('[data-testid=task] [data-testid=state]')?.textContent"
            " === 'done'",
            timeout=60_000,
        )
        page.wait_for_selector(".toast.success:has-text('Download finished')")
        shot(page, "14-standalone-download-done")


def test_usage_view_with_its_charts_and_cleanup_plan(
    host: ThreadedApp, page: Any, shelf: Shelf, tmp_path: Path
) -> None:
    """Issue #14: uses per day and bytes by type drawn as SVG; a cleanup plan for a target."""
    import time

    from model_shelf.library.records import SourceRef
    from model_shelf.library.usage_log import RunEntry, RunUse

    used = add(shelf, tmp_path, "favourite.safetensors", "checkpoints", size=2 * MIB)
    idle = shelf.import_model(
        write_model_file(tmp_path / "incoming" / "idle.safetensors", MIB, seed=7),
        "loras",
        ImportMode.MOVE,
        sources=[SourceRef(kind="url", url="https://example.invalid/idle.safetensors")],
    )
    now = time.time()
    for days_ago in (0, 0, 1, 3, 9):
        when = now - days_ago * 86400
        shelf.usage_log.add_run(
            RunEntry(f"r{days_ago}", when, when + 4, "success", [RunUse(used.id, used.display())])
        )
    open_tab(page, host.url)
    page.click("[data-view=usage]")
    page.wait_for_selector("[data-testid=usage-chart] rect[data-day]", state="attached")
    bars = page.eval_on_selector_all(
        "[data-testid=usage-chart] rect[data-day]",
        "bars => bars.map(b => +b.getAttribute('height'))",
    )
    assert len(bars) == 30 and bars[-1] == max(bars) > 0  # two uses today: the tallest bar
    assert sum(1 for h in bars if h > 0) == 4
    assert (
        page.locator("[data-testid=bytes-chart] rect.ms-chart-never[data-type=loras]").count() == 1
    )
    assert (
        page.locator(
            "[data-testid=usage-top] tr[data-model='checkpoints/favourite.safetensors']"
        ).count()
        == 1
    )
    page.fill("input[name=free]", "1MiB")
    page.click("[data-testid=usage] button[title='Show plan']")
    page.wait_for_selector(f"[data-testid=cleanup-plan] li[data-item='{idle.display()}']")
    assert "favourite" not in page.locator("[data-testid=cleanup-plan]").text_content()
    shot(page, "13-usage")


def test_a_missing_model_offers_alternatives_and_sets_the_widget(
    host: ThreadedApp, page: Any, shelf: Shelf, tmp_path: Path
) -> None:
    """Issue #14: the run failed in Model Shelf's waiting node; picking a stand-in sets the
    loader's widget to it."""
    add(shelf, tmp_path, "dreamshaper_8.safetensors", "checkpoints")
    open_tab(page, host.url)
    page.evaluate(
        """async () => {
            const { app } = await import("/scripts/app.js");
            const node = LiteGraph.createNode("CheckpointLoaderSimple");
            node.widgets[0].value = "dreamshaper_7.safetensors";
            app.graph.add(node);
            window.__graph = app.graph;
        }"""
    )
    page.evaluate(
        """async () => {
            const { api } = await import("/scripts/api.js");
            api.dispatchEvent(new CustomEvent("execution_error", { detail: {
                node_type: "ModelShelfAwaitModel",
                exception_message: "Model 'dreamshaper_7.safetensors' (checkpoints) is missing",
            } }));
        }"""
    )
    choice = page.locator(
        "[data-testid=alternatives] [data-alternative='dreamshaper_8.safetensors'] button"
    )
    choice.wait_for()
    shot(page, "14-alternatives")
    choice.click()
    assert page.evaluate("window.__graph._nodes[0].widgets[0].value") == "dreamshaper_8.safetensors"
    assert page.locator("[data-testid=alternatives]").count() == 0
