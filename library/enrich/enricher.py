"""`Enricher`: look models up on Civitai and Hugging Face, store what was learnt in their records,
fetch their previews. `EnrichWorker`: the same in the background, new models first, then a slow
sweep of stale ones.

Offline (`EnrichSettings.offline`) nothing is asked: the records keep what they hold and say
"metadata not fetched yet" where they hold nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..catalog import Catalog
from ..downloads.breaker import CircuitBreaker
from ..errors import ShelfError
from ..layout import Layout
from ..metadata import TRUST_ORDER, Match, ModelMetadata
from ..records import ModelRecord
from ..settings import DownloadSettings, EnrichSettings
from .cache import AnswerCache
from .civitai import CivitaiLookup
from .client import PoliteClient
from .huggingface import HubLookup
from .previews import fetch_preview

log = logging.getLogger("model_shelf.enrich")


@dataclass
class EnrichReport:
    """What one run did."""

    checked: int = 0
    trust: Counter[str] = field(default_factory=Counter)
    """Matched models by their best badge."""
    unknown: int = 0
    previews: int = 0
    requests: int = 0
    """Requests sent (API and images)."""
    offline: bool = False
    unanswered: int = 0
    """Models whose lookup failed (left as they were; tried again later)."""
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "trust": dict(self.trust),
            "unknown": self.unknown,
            "previews": self.previews,
            "requests": self.requests,
            "offline": self.offline,
            "unanswered": self.unanswered,
            "failures": self.failures[:20],
        }


class Enricher:
    """Runs one enrichment at a time (a lock: the worker and a request never ask twice)."""

    def __init__(
        self,
        layout: Layout,
        catalog: Catalog,
        download_settings: Callable[[], DownloadSettings],
        settings: EnrichSettings,
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.download_settings = download_settings
        self.settings = settings
        self.cache = AnswerCache(catalog.index, settings.fresh_seconds)
        downloads = download_settings()
        self.breaker = CircuitBreaker(
            downloads.breaker_failure_threshold, downloads.breaker_cooldown_seconds
        )
        self._lock = threading.Lock()

    def enrich(self, records: Sequence[ModelRecord], refresh: bool = False) -> EnrichReport:
        """Look ``records`` up (cached answers first), save what was learnt, fetch previews.

        Args:
            records (`Sequence[ModelRecord]`): the models to look up.
            refresh (`bool`, *optional*): ask again even where a cached answer is fresh.

        Returns:
            `EnrichReport`: counts by badge, requests sent, failures (never raised: a source
            that fails leaves its models as they were).
        """
        if self.settings.offline:
            return EnrichReport(checked=0, offline=True)
        with self._lock:
            return asyncio.run(self._run(list(records), refresh))

    async def _run(self, records: list[ModelRecord], refresh: bool) -> EnrichReport:
        report = EnrichReport(checked=len(records))
        downloads = self.download_settings()
        now = datetime.now(timezone.utc)
        client = PoliteClient(self.settings, self.breaker, downloads.allow_insecure_http)
        async with client:
            civitai = CivitaiLookup(
                client, self.cache, downloads, self.settings.batch_size, refresh, report.failures
            )
            hub = HubLookup(client, self.cache, downloads, refresh, report.failures)
            found: dict[str, list[Match]] = {}
            for lookup in (civitai, hub):
                for record_id, match in (await lookup.matches(records, now)).items():
                    found.setdefault(record_id, []).append(match)
            # A record whose lookup failed keeps what it had (a stale answer beats none).
            unanswered = civitai.unanswered | hub.unanswered
            report.unanswered = len(unanswered)
            for record in records:
                matches = sorted(found.get(record.id, []), key=lambda m: TRUST_ORDER[m.trust])
                if not matches and record.id in unanswered:
                    continue
                current = self.catalog.index.get(record.id) or record
                metadata = current.metadata
                fresh = ModelMetadata(
                    matches=matches,
                    checked_at=now,
                    preview=metadata.preview,
                    user=metadata.user,  # the user's own values are never touched
                )
                if fresh.best is not None and self.settings.previews:
                    try:
                        fresh.preview = (
                            await fetch_preview(
                                client, self.layout, current, fresh.best, self.settings
                            )
                            or fresh.preview
                        )
                        report.previews += fresh.preview is not None
                    except (ShelfError, OSError) as exc:
                        report.failures.append(f"preview of {current.display()}: {exc}")
                if fresh.best is not None:
                    report.trust[fresh.best.trust.value] += 1
                else:
                    report.unknown += 1
                if _changed(metadata, fresh):
                    current.metadata = fresh
                    try:
                        self.catalog.save(current)
                    except (ShelfError, OSError) as exc:
                        report.failures.append(f"{current.display()}: {exc}")
        report.requests = client.total_requests
        return report


def _changed(old: ModelMetadata, new: ModelMetadata) -> bool:
    """Whether the record must be written: anything but the check time moved, or a day passed."""
    if old.checked_at is None or new.checked_at is None:
        return True
    same = old.model_dump(exclude={"checked_at"}, mode="json") == new.model_dump(
        exclude={"checked_at"}, mode="json"
    )
    # fetched_at inside matches moves on each ask: compare without it.
    if not same:
        strip = {"matches": {"__all__": {"fetched_at"}}, "checked_at": True}
        same = old.model_dump(exclude=strip, mode="json") == new.model_dump(
            exclude=strip, mode="json"
        )
    return not same or new.checked_at - old.checked_at > timedelta(days=1)


class EnrichWorker:
    """A thread that enriches new models first, then stale ones, every sweep interval."""

    def __init__(self, enricher: Enricher) -> None:
        self.enricher = enricher
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="model-shelf-enrich", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for work now (a model was added)."""
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until a pass has found no more work; False if ``timeout`` came first."""
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _main(self) -> None:
        settings = self.enricher.settings
        while not self._stop.is_set():
            try:
                self._pass(settings)
            except Exception:  # a thread's top level: log and keep going next sweep
                log.exception("Model Shelf: background metadata lookup failed")
            self._idle.set()
            self._wake.wait(settings.sweep_interval_seconds)
            self._wake.clear()

    def _pass(self, settings: EnrichSettings) -> None:
        index = self.enricher.catalog.index
        stale = datetime.now(timezone.utc) - timedelta(seconds=settings.fresh_seconds)
        before = stale.strftime("%Y-%m-%dT%H:%M:%S")  # compares as text with pydantic's form
        seen: set[str] = set()
        while not self._stop.is_set():
            ids = [i for i in index.metadata_rows(settings.batch_size, before) if i not in seen]
            if not ids:
                return
            seen.update(ids)
            report = self.enricher.enrich(index.get_many(ids))
            if report.unanswered:
                return  # a source is failing: try again next sweep, not in a tight loop
