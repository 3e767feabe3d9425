"""Hugging Face, for models whose record names a Hub source: the repository card (licence, base
model, tags) through ``model_info``, and each file's size and LFS sha256 through
``get_paths_info(expand=True)`` (one request for every file of one repository and revision).

The Hub has no lookup by sha256, so a file with no Hub source is never asked about. huggingface_hub
itself makes the requests (its client blocks: run in a thread), pointed at
`DownloadSettings.hf_endpoint`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from ..errors import RemoteError, ShelfError
from ..metadata import Licence, Match
from ..records import ModelRecord, SourceRef
from ..settings import DownloadSettings, stored_hf_token
from ..sources.huggingface import _transport_errors
from .cache import Answer, AnswerCache
from .client import PoliteClient
from .trust import judge

_FAILED: Any = object()


def hub_source(record: ModelRecord) -> SourceRef | None:
    for ref in record.sources:
        if ref.kind == "huggingface" and ref.repo_id and ref.path:
            return ref
    return None


class HubLookup:
    """Cached repository and file lookups for one run."""

    def __init__(
        self,
        client: PoliteClient,
        cache: AnswerCache,
        settings: DownloadSettings,
        refresh: bool,
        failures: list[str],
    ) -> None:
        self.client = client
        self.cache = cache
        self.endpoint = settings.hf_endpoint.rstrip("/")
        self.settings = settings
        self.refresh = refresh
        self.failures = failures
        self.unanswered: set[str] = set()
        """Ids of the records whose lookup failed this run (their records stay as they were)."""

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        token = self.settings.hf_token
        value = token.get_secret_value() if token is not None else stored_hf_token()
        return HfApi(endpoint=self.endpoint, token=value or False)

    def _errors(self) -> tuple[type[BaseException], ...]:
        from huggingface_hub.errors import HfHubHTTPError

        return (HfHubHTTPError, *_transport_errors())

    async def matches(self, records: Sequence[ModelRecord], now: datetime) -> dict[str, Match]:
        wanted = [(r, ref) for r in records if (ref := hub_source(r)) is not None]
        if not wanted:
            return {}
        api = self._api()
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for _, ref in wanted:
            groups[(ref.repo_id or "", ref.revision or "main")].append(ref.path or "")
        repos: dict[tuple[str, str], dict[str, Any] | None] = {}
        files: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        for (repo_id, revision), paths in groups.items():
            repos[(repo_id, revision)] = await self._repo(api, repo_id, revision)
            for path, info in (await self._files(api, repo_id, revision, paths)).items():
                files[(repo_id, revision, path)] = info
        found = {}
        for record, ref in wanted:
            key = (ref.repo_id or "", ref.revision or "main")
            info = files.get((*key, ref.path or ""), _FAILED)
            if info is _FAILED:
                self.unanswered.add(record.id)
                continue
            if info is None:
                continue
            trust = judge(record, info.get("path"), info.get("size"), info.get("sha256"))
            if trust is None:
                continue
            found[record.id] = self._match(record, ref, trust, repos.get(key), now)
        return found

    async def _repo(self, api: Any, repo_id: str, revision: str) -> dict[str, Any] | None:
        key = f"hf:repo:{repo_id}@{revision}"
        cached = self.cache.get([key])
        if not AnswerCache.to_ask([key], cached, self.refresh):
            return cached[key].body
        url = f"{self.endpoint}/api/models/{repo_id}"
        call = partial(api.model_info, repo_id, revision=revision)
        try:
            info = await self.client.in_thread(url, call, self._errors())
        except ShelfError as exc:
            if getattr(exc, "status", None) == 404:
                self.cache.put({key: None})
                return None
            self.failures.append(f"Hugging Face: {exc}")
            return cached[key].body if key in cached else None
        card = info.card_data.to_dict() if info.card_data is not None else {}
        body = {
            "id": info.id,
            "sha": info.sha,
            "author": info.author,
            "tags": list(info.tags or []),
            "license": card.get("license"),
            "base_model": card.get("base_model"),
        }
        self.cache.put({key: body})
        return body

    async def _files(
        self, api: Any, repo_id: str, revision: str, paths: Sequence[str]
    ) -> dict[str, dict[str, Any] | None]:
        keys = {f"hf:file:{repo_id}@{revision}:{p}": p for p in paths}
        cached: dict[str, Answer] = self.cache.get(keys)
        ask = [keys[k] for k in AnswerCache.to_ask(keys, cached, self.refresh)]
        if ask:
            url = f"{self.endpoint}/api/models/{repo_id}/paths-info/{revision}"
            call = partial(api.get_paths_info, repo_id, ask, revision=revision, expand=True)
            try:
                entries = await self.client.in_thread(url, call, self._errors())
                if not isinstance(entries, list):
                    raise RemoteError(f"unexpected answer from {url}", retryable=False)
            except ShelfError as exc:
                if getattr(exc, "status", None) != 404:
                    self.failures.append(f"Hugging Face: {exc}")
                    entries = None
                else:
                    entries = []  # no such repository or revision: no file of it is known
            if entries is not None:
                hits: dict[str, Any | None] = {
                    f"hf:file:{repo_id}@{revision}:{p}": None for p in ask
                }
                for entry in entries:
                    path = getattr(entry, "path", None)
                    if path in ask and hasattr(entry, "size"):
                        lfs = getattr(entry, "lfs", None)
                        hits[f"hf:file:{repo_id}@{revision}:{path}"] = {
                            "path": path,
                            "size": entry.size,
                            "sha256": lfs.sha256 if lfs is not None else None,
                        }
                self.cache.put(hits)
                for key, body in hits.items():
                    cached[key] = Answer(body is not None, body, 0.0, True)
        # A path neither cached nor answered is left out: its lookup failed.
        return {p: (a.body if a.found else None) for k, p in keys.items() if (a := cached.get(k))}

    def _match(
        self,
        record: ModelRecord,
        ref: SourceRef,
        trust: Any,
        repo: dict[str, Any] | None,
        now: datetime,
    ) -> Match:
        repo = repo or {}
        base = repo.get("base_model")
        if isinstance(base, list):
            base = base[0] if base else None
        licence = repo.get("license")
        if isinstance(licence, list):
            licence = licence[0] if licence else None
        revision = ref.revision or "main"
        return Match(
            source="huggingface",
            trust=trust,
            fetched_at=now,
            model_name=ref.repo_id,
            version_name=str(repo.get("sha") or revision)[:12],
            base_model=str(base) if base else None,
            page_url=f"{self.endpoint}/{ref.repo_id}",
            source_url=f"{self.endpoint}/{ref.repo_id}/resolve/{revision}/{ref.path}",
            repo_id=ref.repo_id,
            licence=Licence(name=str(licence)) if licence else None,
            tags=[str(t) for t in repo.get("tags") or []][:20],
            creator=str(repo["author"]) if repo.get("author") else None,
        )
