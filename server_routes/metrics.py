"""Counters for ``GET /model-shelf/metrics``, rendered in the Prometheus text format by hand
(the format is a few lines of text; a client library would add a dependency for nothing).

Counters are per process, since it started: bytes downloaded (from progress events), API errors
by code, downloads that failed by code. Gauges are read when scraped: tasks by state, models in
the index, bytes hashed by the background hasher.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable

from ..library.downloads import ProgressEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Process-wide counters, fed from any thread."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._task_bytes: dict[str, int] = {}
        self.bytes_downloaded = 0
        self.api_errors: Counter[str] = Counter()
        self.download_failures: Counter[str] = Counter()

    def count_error(self, code: str) -> None:
        with self._lock:
            self.api_errors[code] += 1

    def snapshot(self) -> tuple[int, dict[str, int], dict[str, int]]:
        """Bytes downloaded, API errors by code, download failures by code."""
        with self._lock:
            return self.bytes_downloaded, dict(self.api_errors), dict(self.download_failures)

    def on_progress(self, event: ProgressEvent) -> None:
        """A download `ProgressListener`: adds each task's new bytes; counts failures."""
        with self._lock:
            last = self._task_bytes.get(event.task_id)
            if last is not None and event.bytes_done > last:
                self.bytes_downloaded += event.bytes_done - last
            state = event.state.value
            if state in ("done", "failed", "cancelled"):
                self._task_bytes.pop(event.task_id, None)
                if state == "failed":
                    self.download_failures[event.error_code or "UNKNOWN"] += 1
            else:
                # A restart from zero (the server ignored Range) starts counting again.
                self._task_bytes[event.task_id] = event.bytes_done


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        rendered = int(value) if float(value).is_integer() else value
        lines.append(f"{name}{{{label_text}}} {rendered}" if label_text else f"{name} {rendered}")
    return lines


def render(
    metrics: Metrics,
    tasks_by_state: dict[str, int],
    models: int,
    models_by_health: dict[str, int],
    bytes_hashed: int,
) -> str:
    """The exposition text for one scrape."""
    downloaded, api_errors, failures = metrics.snapshot()
    lines: list[str] = []
    lines += _family(
        "model_shelf_tasks",
        "gauge",
        "Download tasks by state.",
        [({"state": s}, n) for s, n in sorted(tasks_by_state.items())],
    )
    lines += _family(
        "model_shelf_downloaded_bytes_total",
        "counter",
        "Bytes downloaded by this process.",
        [({}, downloaded)],
    )
    lines += _family(
        "model_shelf_hashed_bytes_total",
        "counter",
        "Bytes hashed by this process's background hasher.",
        [({}, bytes_hashed)],
    )
    lines += _family("model_shelf_index_models", "gauge", "Models in the index.", [({}, models)])
    lines += _family(
        "model_shelf_models",
        "gauge",
        "Models by health.",
        [({"health": h}, n) for h, n in sorted(models_by_health.items())],
    )
    lines += _family(
        "model_shelf_api_errors_total",
        "counter",
        "API requests answered with an error, by code.",
        [({"code": c}, n) for c, n in sorted(api_errors.items())],
    )
    lines += _family(
        "model_shelf_download_failures_total",
        "counter",
        "Downloads that failed, by error code.",
        [({"code": c}, n) for c, n in sorted(failures.items())],
    )
    lines += _family(
        "model_shelf_uptime_seconds",
        "gauge",
        "Seconds since the API started.",
        [({}, round(time.time() - metrics.started_at, 3))],
    )
    return "\n".join(lines) + "\n"
