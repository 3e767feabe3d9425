"""Remote answers cached in the index, stale-while-revalidate.

An answer younger than `EnrichSettings.fresh_seconds` is used as is and nobody is asked. An older
one is still used, and asked for again (by the run, or by the background sweep); if asking fails,
the old answer stays in force. "Not found" is an answer too, cached the same way, so a file no
source knows is not asked about on every start. The index is disposable: losing it loses only
the cache (the records keep what was learnt).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..index import IndexStore


@dataclass(frozen=True)
class Answer:
    found: bool
    body: Any
    fetched_at: float
    fresh: bool


class AnswerCache:
    """Answers by key (``civitai:hash:<sha256>``, ``civitai:model:<id>``, ``hf:repo:...``)."""

    def __init__(self, index: IndexStore, fresh_seconds: float) -> None:
        self.index = index
        self.fresh_seconds = fresh_seconds

    def get(self, keys: Iterable[str], now: float | None = None) -> dict[str, Answer]:
        now = time.time() if now is None else now
        found = {}
        for key, (fetched_at, hit, body) in self.index.answers(list(keys)).items():
            fresh = now - fetched_at < self.fresh_seconds
            found[key] = Answer(hit, json.loads(body) if hit else None, fetched_at, fresh)
        return found

    def put(self, answers: dict[str, Any | None], now: float | None = None) -> None:
        """Store ``key -> body`` (None: the source does not know it)."""
        now = time.time() if now is None else now
        self.index.store_answers(
            (key, now, body is not None, json.dumps(body) if body is not None else "")
            for key, body in answers.items()
        )

    @staticmethod
    def to_ask(keys: Iterable[str], cached: dict[str, Answer], refresh: bool) -> list[str]:
        """The keys to ask the source about: not cached, stale, or all of them on ``refresh``."""
        return [k for k in dict.fromkeys(keys) if refresh or k not in cached or not cached[k].fresh]
