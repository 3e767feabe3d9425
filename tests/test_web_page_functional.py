"""The sidebar as ComfyUI's page hosts it (issue 16), in headless Chromium at 1400x900.

The stand-in page (``tests/web_host``) mounts the tab as ComfyUI_frontend 1.27/1.49 do (a bare
``<div>`` in a full-height scrolling container, a sidebar 20% wide), loads workflows through
``app.loadGraphData`` (extensions' ``beforeConfigureGraph`` / ``afterConfigureGraph``), queues
them rebuilt from the graph (no top-level ``models``), refreshes combos with
``app.refreshComboInNodes`` and reports websocket messages of unregistered types as the real
``api`` does. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from downloads_support import LOOPBACK_FETCHES
from remote_server import RemoteServer, write_model_file
from routes_support import ThreadedApp
from test_web_functional import add, browser, host, open_tab, shelf, shot  # noqa: F401
from web_host.host import PROMPTS

from model_shelf.library import Shelf
from model_shelf.library.autofetch import Availability, LibraryResolver, plan
from model_shelf.library.stored_settings import StoredLimits

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow

SIDEBAR_PX = 253  # the real page's sidebar at 1400 px (issue 16)


@pytest.fixture
def page(browser: Any) -> Any:  # noqa: F811
    """A 1400x900 page; fails the test on any script error or "Unknown message type"."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console",
        lambda message: "Unknown message type" in message.text and errors.append(message.text),
    )
    yield opened
    context.close()
    assert not errors, f"errors in the page: {errors}"


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not shown"
    return found


def inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["x"] >= outer["x"] - 0.5
        and inner["y"] >= outer["y"] - 0.5
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 0.5
    )


def no_sideways_scroll(page: Any) -> bool:
    return page.evaluate(
        "(() => { const p = document.querySelector('[data-testid=model-shelf-panel]');"
        " return [p, ...p.querySelectorAll('.ms-view:not([hidden])')]"
        ".every(e => e.scrollWidth <= e.clientWidth + 1); })()"
    )


def test_layout_every_view_fits_the_default_sidebar(
    host: ThreadedApp,  # noqa: F811
    page: Any,
    shelf: Shelf,  # noqa: F811
    tmp_path: Path,
) -> None:
    for i in range(30):
        add(shelf, tmp_path, f"model-{i:02}.safetensors", "loras")
    page.goto(host.url)
    page.wait_for_selector("body[data-ready=true]")
    page.evaluate(f"document.getElementById('side-panel').style.width = '{SIDEBAR_PX}px'")
    page.click("[data-tab=model-shelf]")
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]').textContent === '30 models'"
    )
    sidebar = box(page, ".sidebar-content-container")
    panel = box(page, "[data-testid=model-shelf-panel]")
    assert sidebar["width"] == pytest.approx(SIDEBAR_PX, abs=1)
    assert panel["height"] >= sidebar["height"] - 1, (panel, sidebar)  # fills the sidebar
    for view in ["library", "downloads", "health", "settings"]:
        assert inside(box(page, f".ms-tab[data-view={view}]"), panel), view
    listed = box(page, ".ms-vlist")
    assert listed["y"] + listed["height"] >= panel["y"] + panel["height"] - 16  # to the bottom
    rows = page.evaluate(
        "[...document.querySelectorAll('[data-testid=model-row]')]"
        ".filter(r => r.checkVisibility() && r.dataset.id).length"
    )
    assert rows >= 10, f"{rows} rows shown in a {listed['height']} px list"
    shot(page, "20-layout-library")

    page.locator("[data-testid=model-row]").first.click()
    drawer = page.locator("[data-testid=drawer]")
    drawer.wait_for()
    page.wait_for_selector("[data-testid=drawer] code")
    assert inside(box(page, "[data-testid=drawer]"), panel)
    for label in ["Hashes", "Edit"]:
        heading = drawer.locator(f"h4:text-is('{label}')")
        heading.scroll_into_view_if_needed()
        assert inside(heading.bounding_box(), panel), label
    delete = drawer.locator("button[title=Delete]")
    delete.scroll_into_view_if_needed()
    assert inside(delete.bounding_box(), panel)
    assert inside(delete.bounding_box(), box(page, "[data-testid=drawer]"))
    shot(page, "21-layout-drawer")

    for view in ["downloads", "health", "settings"]:
        page.click(f"[data-view={view}]")
        page.wait_for_selector(f".ms-{view}:not([hidden])")
        now = box(page, "[data-testid=model-shelf-panel]")
        assert (now["x"], now["width"]) == (panel["x"], panel["width"]), view  # no shift
        assert no_sideways_scroll(page), view
        if view == "downloads":
            source = box(page, "[data-testid=download-source]")
            assert source["width"] >= 0.85 * (panel["width"] - 16), source
        shot(page, f"22-layout-{view}")


def test_search_leaves_no_stale_row(
    host: ThreadedApp,  # noqa: F811
    page: Any,
    shelf: Shelf,  # noqa: F811
    tmp_path: Path,
) -> None:
    for name in ["alpha.safetensors", "beta.safetensors", "gamma.safetensors", "delta.safetensors"]:
        add(shelf, tmp_path, name, "checkpoints")
    open_tab(page, host.url)
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]').textContent === '4 models'"
    )
    page.locator("[data-testid=search]").fill("gamma")
    page.wait_for_function(
        "document.querySelector('[data-testid=model-count]').textContent === '1 model'"
    )
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=model-row]')]"
        ".filter(r => r.checkVisibility()).length === 1"
    )
    shown = page.evaluate(
        "[...document.querySelectorAll('[data-testid=model-row]')].filter(r => r.checkVisibility())"
        ".map(r => r.querySelector('.ms-model-name').title)"
    )
    assert shown == ["checkpoints/gamma.safetensors"]
    # A row out of use holds no model: nothing stale can be opened or dragged.
    stale = page.evaluate(
        """[...document.querySelectorAll('[data-testid=model-row]')].filter(r => r.hidden)
            .map(r => {
                const drag = new DragEvent('dragstart', {bubbles: true, cancelable: true,
                                                         dataTransfer: new DataTransfer()});
                r.dispatchEvent(drag);
                return {id: r.dataset.id ?? null, dragged: !drag.defaultPrevented};
            })"""
    )
    assert stale and all(r == {"id": None, "dragged": False} for r in stale), stale
    where = box(page, "[data-testid=model-row]:not([hidden])")
    below = page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y)?.closest('[data-testid=model-row]')"
        "?.dataset.id ?? null",
        [where["x"] + 20, where["y"] + where["height"] * 1.5],
    )
    assert below is None  # under the one match: no row at all
    shot(page, "23-search-one-match")


def workflow(loader: str, widget_value: str, models: list[dict[str, str]]) -> dict[str, Any]:
    """A UI workflow with one loader node; metadata only in the top-level ``models``."""
    return {
        "version": 0.4,
        "nodes": [
            {"id": 1, "type": loader, "pos": [100, 100], "widgets_values": [widget_value]},
            {"id": 2, "type": "LoraLoader", "pos": [400, 100], "widgets_values": ["", 1, 1]},
        ],
        "links": [],
        "models": models,
    }


def test_combos_follow_a_download_with_the_tab_closed(
    host: ThreadedApp,  # noqa: F811
    page: Any,
    shelf: Shelf,  # noqa: F811
    tmp_path: Path,
) -> None:
    add(shelf, tmp_path, "keep-me.safetensors", "checkpoints")
    with RemoteServer() as remote:
        remote.serve(
            "fresh-lora.safetensors",
            write_model_file(tmp_path / "remote" / "fresh-lora.safetensors", 64 * 1024),
        )
        page.goto(host.url)
        page.wait_for_selector("body[data-ready=true]")
        page.evaluate(
            "wf => window.comfyApp.loadGraphData(wf)",
            workflow("CheckpointLoaderSimple", "keep-me.safetensors", []),
        )
        page.evaluate("window.comfyApp.refreshComboInNodes()")  # the page's start-up state
        before = page.evaluate("window.comfyApp.combosRefreshed")
        answer = page.evaluate(
            """url => fetch('/api/model-shelf/downloads', {method: 'POST',
                 headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({source: url, type: 'loras'})}).then(r => r.status)""",
            remote.url("fresh-lora.safetensors"),
        )
        assert answer == 201
        page.wait_for_selector(".p-toast-message-success:has-text('Download finished')")
        page.wait_for_function(
            "window.comfyApp.graph._nodes[1].widgets[0].options.values"
            ".includes('fresh-lora.safetensors')",
            timeout=20_000,
        )
    assert page.evaluate("window.comfyApp.combosRefreshed") > before
    values = page.evaluate("window.comfyApp.graph._nodes.map(n => n.widgets[0].value)")
    assert values == ["keep-me.safetensors", ""]  # widget values kept
    assert page.locator("[data-testid=model-shelf-panel]").count() == 0  # never opened
    shot(page, "24-combos-refreshed")


def test_top_level_models_reach_the_server_and_can_be_fetched(
    host: ThreadedApp,  # noqa: F811
    page: Any,
    shelf: Shelf,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The dialog fetches as the workflow asks (issue #11): loopback only because it is allowed.
    shelf.update_download_settings(StoredLimits(allowed_fetch_hosts=LOOPBACK_FETCHES))
    with RemoteServer() as remote:
        remote.serve(
            "described.safetensors",
            write_model_file(tmp_path / "remote" / "described.safetensors", 256 * 1024),
        )
        entry = {
            "name": "described.safetensors",
            "url": remote.url("described.safetensors"),
            "directory": "checkpoints",
        }
        page.goto(host.url)
        page.wait_for_selector("body[data-ready=true]")
        page.evaluate(
            "wf => window.comfyApp.loadGraphData(wf)",
            workflow("CheckpointLoaderSimple", "described.safetensors", [entry]),
        )
        dialog = page.locator("[data-testid=missing-models]")
        dialog.wait_for()
        row = dialog.locator("[data-testid=missing-model][data-name='described.safetensors']")
        assert remote.url("described.safetensors").split("/")[2] in row.text_content()
        shot(page, "25-missing-models")

        # Queued as the page queues: the workflow rebuilt from the graph.
        page.evaluate("window.comfyApp.queuePrompt(0)")
        (body,) = host._runner.app[PROMPTS]
        sent = body["extra_data"]["extra_pnginfo"]["workflow"]
        assert "models" not in sent  # what the frontends drop
        assert sent["nodes"][0]["properties"]["models"] == [entry]
        (planned,) = [p for p in plan(body, shelf, LibraryResolver(shelf)).inputs]
        assert planned.availability is Availability.FETCH
        assert planned.fetch is not None and planned.fetch.source == entry["url"]

        dialog.locator("button:has-text('Fetch all')").click()
        page.wait_for_function(
            "document.querySelector('[data-testid=missing-model]').dataset.state === 'done'",
            timeout=30_000,
        )
        assert "In the library" in row.text_content()
        assert dialog.locator("[data-testid=missing-summary]").text_content() == (
            "1 of 1 in the library."
        )
        shot(page, "26-missing-models-fetched")
    assert shelf.find("checkpoints/described.safetensors").size == 256 * 1024
