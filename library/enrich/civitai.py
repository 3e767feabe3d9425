"""Civitai, by hash: ``POST /model-versions/by-hash`` (up to 100 sha256 per request), the models
of the versions found in one ``GET /models?ids=...`` per 100 (licence, tags, creator and the
version list that says a newer version exists), and ``GET /model-versions/{id}`` for a file whose
record names a Civitai version but whose hash Civitai does not know (a name/size match).

Answers are cached in the index (`AnswerCache`); the API base is
`DownloadSettings.civitai_api_base` (civitai.com or civitai.red, or a test server).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from ..errors import RemoteError, ShelfError
from ..metadata import ImageRef, Licence, Match, NewerVersion, Trust
from ..records import ModelRecord
from ..settings import DownloadSettings
from .cache import Answer, AnswerCache
from .client import PoliteClient
from .trust import SIZE_SLACK_BYTES, judge


def _hex(record: ModelRecord) -> str | None:
    sha = record.sha256
    return sha.removeprefix("sha256:").lower() if sha else None


class CivitaiLookup:
    """Batched, cached Civitai lookups for one run."""

    def __init__(
        self,
        client: PoliteClient,
        cache: AnswerCache,
        settings: DownloadSettings,
        batch_size: int,
        refresh: bool,
        failures: list[str],
    ) -> None:
        self.client = client
        self.cache = cache
        self.base = settings.civitai_api_base.rstrip("/")
        parts = urlsplit(self.base)
        self.site = f"{parts.scheme}://{parts.netloc}"
        key = settings.civitai_api_key
        self.headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        self.batch_size = batch_size
        self.refresh = refresh
        self.failures = failures
        self.unanswered: set[str] = set()
        """Ids of the records whose lookup failed this run (their records stay as they were)."""

    async def matches(self, records: Sequence[ModelRecord], now: datetime) -> dict[str, Match]:
        """``record id -> Match`` for the records Civitai knows (by hash, else by version)."""
        failed: set[str] = set()
        by_hash = await self._versions_by_hash([h for r in records if (h := _hex(r))], failed)
        wanted_versions = {
            r.id: ref.version_id
            for r in records
            if by_hash.get(_hex(r) or "") is None
            for ref in r.sources
            if ref.kind == "civitai" and ref.version_id
        }
        by_id = await self._versions_by_id(sorted(set(wanted_versions.values())), failed)
        self.unanswered = {
            r.id
            for r in records
            if (_hex(r) or "") in failed or f"v{wanted_versions.get(r.id)}" in failed
        }
        found: dict[str, tuple[dict[str, Any], Trust, dict[str, Any]]] = {}
        for record in records:
            version = by_hash.get(_hex(record) or "")
            if version is not None:
                entry = _file_with_hash(version, _hex(record) or "")
                found[record.id] = (version, Trust.VERIFIED, entry or {})
                continue
            version = by_id.get(wanted_versions.get(record.id, -1))
            if version is None:
                continue
            best: tuple[Trust, dict[str, Any]] | None = None
            for entry in _files(version):
                size = entry.get("sizeKB")
                sha = (entry.get("hashes") or {}).get("SHA256")
                trust = judge(
                    record,
                    entry.get("name"),
                    int(float(size) * 1024) if isinstance(size, (int, float)) else None,
                    sha if isinstance(sha, str) else None,
                    SIZE_SLACK_BYTES,
                )
                if trust is not None and (best is None or _rank(trust) < _rank(best[0])):
                    best = (trust, entry)
            if best is not None:
                found[record.id] = (version, best[0], best[1])
        models = await self._models(
            sorted({int(v["modelId"]) for v, _, _ in found.values() if _int(v.get("modelId"))})
        )
        return {
            record_id: self._match(
                version, trust, entry, models.get(_int(version.get("modelId")) or -1), now
            )
            for record_id, (version, trust, entry) in found.items()
        }

    # -- requests --------------------------------------------------------------------------------

    async def _versions_by_hash(
        self, hashes: Sequence[str], failed: set[str]
    ) -> dict[str, dict[str, Any]]:
        keys = {f"civitai:hash:{h}": h for h in hashes}
        cached = self.cache.get(keys)
        ask = [keys[k] for k in AnswerCache.to_ask(keys, cached, self.refresh)]
        for start in range(0, len(ask), self.batch_size):
            chunk = ask[start : start + self.batch_size]
            try:
                answer = await self.client.get_json(
                    f"{self.base}/model-versions/by-hash",
                    body=[h.upper() for h in chunk],
                    headers=self.headers,
                )
                versions = _list_of_dicts(answer if answer is not None else [], "by-hash")
            except ShelfError as exc:
                self.failures.append(f"Civitai: {exc}")
                failed.update(h for h in chunk if f"civitai:hash:{h}" not in cached)
                continue
            hits: dict[str, Any | None] = {f"civitai:hash:{h}": None for h in chunk}
            wanted = set(chunk)
            for version in versions:
                for entry in _files(version):
                    sha = str((entry.get("hashes") or {}).get("SHA256") or "").lower()
                    if sha in wanted:
                        hits[f"civitai:hash:{sha}"] = version
            self.cache.put(hits)
            for key, body in hits.items():
                cached[key] = _fresh(body)
        return {h: a.body for k, h in keys.items() if (a := cached.get(k)) and a.found}

    async def _versions_by_id(
        self, ids: Sequence[int], failed: set[str]
    ) -> dict[int, dict[str, Any]]:
        keys = {f"civitai:version:{i}": i for i in ids}
        cached = self.cache.get(keys)
        for key in AnswerCache.to_ask(keys, cached, self.refresh):
            try:
                answer = await self.client.get_json(
                    f"{self.base}/model-versions/{keys[key]}", headers=self.headers
                )
                body = _dict(answer, "model version") if answer is not None else None
            except ShelfError as exc:
                self.failures.append(f"Civitai: {exc}")
                if key not in cached:
                    failed.add(f"v{keys[key]}")
                continue
            self.cache.put({key: body})
            cached[key] = _fresh(body)
        return {i: a.body for k, i in keys.items() if (a := cached.get(k)) and a.found}

    async def _models(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        keys = {f"civitai:model:{i}": i for i in ids}
        cached = self.cache.get(keys)
        ask = [keys[k] for k in AnswerCache.to_ask(keys, cached, self.refresh)]
        for start in range(0, len(ask), self.batch_size):
            chunk = ask[start : start + self.batch_size]
            params = [("ids", str(i)) for i in chunk] + [("limit", str(len(chunk)))]
            try:
                answer = await self.client.get_json(
                    f"{self.base}/models", params=params, headers=self.headers
                )
                items = _list_of_dicts(_dict(answer or {}, "models").get("items") or [], "models")
            except ShelfError as exc:
                self.failures.append(f"Civitai: {exc}")
                continue
            hits: dict[str, Any | None] = {f"civitai:model:{i}": None for i in chunk}
            for item in items:
                if _int(item.get("id")) in chunk:
                    hits[f"civitai:model:{item['id']}"] = item
            self.cache.put(hits)
            for key, body in hits.items():
                cached[key] = _fresh(body)
        return {i: a.body for k, i in keys.items() if (a := cached.get(k)) and a.found}

    # -- answers -> matches ---------------------------------------------------------------------

    def _match(
        self,
        version: dict[str, Any],
        trust: Trust,
        entry: dict[str, Any],
        model: dict[str, Any] | None,
        now: datetime,
    ) -> Match:
        model_id = _int(version.get("modelId"))
        version_id = _int(version.get("id"))
        inner = version.get("model") if isinstance(version.get("model"), dict) else {}
        page = f"{self.site}/models/{model_id}?modelVersionId={version_id}" if model_id else None
        download = entry.get("downloadUrl") or version.get("downloadUrl")
        licence = None
        newer = None
        tags: list[str] = []
        creator = None
        if model is not None:
            commercial = model.get("allowCommercialUse")
            licence = Licence(
                allow_no_credit=_bool(model.get("allowNoCredit")),
                allow_commercial_use=(
                    [str(c) for c in commercial]
                    if isinstance(commercial, list)
                    else [str(commercial)]
                    if commercial
                    else []
                ),
                allow_derivatives=_bool(model.get("allowDerivatives")),
                allow_different_license=_bool(model.get("allowDifferentLicense")),
            )
            tags = [str(t) for t in model.get("tags") or [] if isinstance(t, str)]
            owner = model.get("creator")
            creator = str(owner.get("username")) if isinstance(owner, dict) else None
            newer = _newer(model, version_id, self.site)
        images = []
        for image in version.get("images") or []:
            if isinstance(image, dict) and isinstance(image.get("url"), str):
                images.append(
                    ImageRef(
                        url=image["url"],
                        nsfw_level=_int(image.get("nsfwLevel")) or 0,
                        width=_int(image.get("width")),
                        height=_int(image.get("height")),
                        type=str(image.get("type") or "image"),
                    )
                )
        words = version.get("trainedWords") or []
        return Match(
            source="civitai",
            trust=trust,
            fetched_at=now,
            model_name=_str(inner.get("name")) or _str((model or {}).get("name")),
            version_name=_str(version.get("name")),
            base_model=_str(version.get("baseModel")),
            trained_words=[str(w) for w in words if isinstance(w, str) and w.strip()],
            page_url=page,
            source_url=str(download) if isinstance(download, str) else None,
            model_id=model_id,
            version_id=version_id,
            nsfw_level=_int(version.get("nsfwLevel")),
            nsfw=bool(inner.get("nsfw") or (model or {}).get("nsfw")),
            licence=licence,
            tags=tags,
            creator=creator,
            images=images[:8],
            newer_version=newer,
        )


def _newer(model: dict[str, Any], version_id: int | None, site: str) -> NewerVersion | None:
    """The model's newest version (the API lists the newest first), if it is not ours."""
    versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict)]
    newest_id = _int(versions[0].get("id")) if versions else None
    if newest_id is None or version_id is None or newest_id == version_id:
        return None
    return NewerVersion(
        version_id=newest_id,
        name=_str(versions[0].get("name")),
        source=f"civitai:{newest_id}",
        page_url=f"{site}/models/{model.get('id')}?modelVersionId={newest_id}",
    )


def _files(version: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in version.get("files") or [] if isinstance(f, dict)]


def _file_with_hash(version: dict[str, Any], sha: str) -> dict[str, Any] | None:
    for entry in _files(version):
        if str((entry.get("hashes") or {}).get("SHA256") or "").lower() == sha:
            return entry
    return None


def _rank(trust: Trust) -> int:
    return [Trust.VERIFIED, Trust.LIKELY, Trust.GUESS].index(trust)


def _fresh(body: Any | None) -> Answer:
    """A just-received answer, as the cache would give it back."""
    return Answer(body is not None, body, 0.0, True)


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RemoteError(f"unexpected Civitai answer for {what}", retryable=False)
    return value


def _list_of_dicts(value: object, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise RemoteError(f"unexpected Civitai answer for {what}", retryable=False)
    return [v for v in value if isinstance(v, dict)]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
