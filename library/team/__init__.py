"""Beyond one machine (issue #13): team stores (S3-compatible buckets) and LAN peers.

`Team` is what ``shelf.team`` is: configure stores and peers, push models, list what the stores
and peers hold, and decide what this library serves to peers. `TeamSources` is the download
engine's `MirrorFinder`: for a sha256 it names the peers, then the stores, that may hold the
bytes. Configuration is in ``.shelf/team.json``, keys and the team token in
``.shelf/team-secrets.json`` (0600), both through `SettingsFile`: read afresh on each use, so
a change from the CLI reaches a running ``serve`` at once.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from ..catalog import Catalog
from ..downloads.mirrors import Mirror
from ..errors import (
    InvalidSourceError,
    ModelNotFoundError,
    SettingsError,
    ShelfError,
    StoreNotFoundError,
    UnsupportedOperationError,
)
from ..hashing import split_digest
from ..records import ModelKind, ModelRecord, RecordStore
from ..stored_settings import SettingsFile, StoreConfig, StoreKeys, TeamConfig, mask
from .discovery import Discovery
from .peers import PeerDirectory, auth_headers, check_peer_request, get_json, peer_entries
from .store import PushProgress, PushResult, StoreEntry, StoreManifest, TeamStore

log = logging.getLogger("model_shelf.team")

BLOB_ROUTE = "/model-shelf/blobs/{sha256}"


@dataclass(frozen=True)
class RemoteModel:
    """A model some store or peer holds (`Team.remote_models`)."""

    where: str
    """``store`` or ``peer``."""
    label: str
    """The store's name or the peer's URL."""
    entry: StoreEntry


@dataclass(frozen=True)
class StoreView:
    """A configured store as shown to people: keys masked."""

    name: str
    url: str
    endpoint: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None


def parse_store_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, prefix)``.

    Raises:
        `InvalidSourceError`: not an ``s3://`` URL with a bucket.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise InvalidSourceError(f"not a store URL: {url!r} (expected s3://bucket/prefix)")
    return parts.netloc, parts.path.strip("/")


class Team:
    """Stores and peers of one library. Blocking: routes call it in an executor."""

    def __init__(
        self,
        settings: SettingsFile,
        catalog: Catalog,
        records: RecordStore,
        peers: PeerDirectory | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.records = records
        self.directory = peers or PeerDirectory()
        self._stores: dict[str, TeamStore] = {}
        self._lock = threading.Lock()

    # -- configuration -------------------------------------------------------------------------

    def config(self) -> TeamConfig:
        return self.settings.team()

    def add_store(
        self,
        name: str,
        url: str,
        *,
        endpoint: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str = "us-east-1",
        part_size_bytes: int | None = None,
        check: bool = True,
    ) -> StoreView:
        """Add (or replace) a store; with ``check``, first make sure its bucket answers.

        Raises:
            `InvalidSourceError`: a bad ``s3://`` URL. `SettingsError`: a bad name or value.
            `StoreAuthError`, `StoreNotFoundError`, `StoreError`: the check failed (nothing saved).
        """
        bucket, prefix = parse_store_url(url)
        fields: dict[str, object] = {
            "name": name,
            "bucket": bucket,
            "prefix": prefix,
            "endpoint": endpoint,
            "region": region,
        }
        if part_size_bytes is not None:
            fields["part_size_bytes"] = part_size_bytes
        try:
            config = StoreConfig.model_validate(fields)
        except ValidationError as exc:
            problems = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
            raise SettingsError(f"bad store settings: {problems}") from None
        keys = None
        if access_key_id or secret_access_key:
            if not (access_key_id and secret_access_key):
                raise SettingsError("give both --access-key and --secret-key")
            keys = StoreKeys(
                access_key_id=access_key_id, secret_access_key=SecretStr(secret_access_key)
            )
        if check:
            TeamStore(config, keys).check()
        team = self.config()
        team.stores = [s for s in team.stores if s.name != name] + [config]
        team_secrets = self.settings.team_secrets()
        if keys is not None:
            team_secrets.store_keys[name] = keys
            self.settings.save_team_secrets(team_secrets)
        self.settings.save_team(team)
        return self._view(config, team_secrets.store_keys.get(name))

    def remove_store(self, name: str) -> None:
        """Raises `StoreNotFoundError`: no such store."""
        self._store_config(name)
        team = self.config()
        team.stores = [s for s in team.stores if s.name != name]
        self.settings.save_team(team)
        team_secrets = self.settings.team_secrets()
        if team_secrets.store_keys.pop(name, None) is not None:
            self.settings.save_team_secrets(team_secrets)

    def stores(self) -> list[StoreView]:
        keys = self.settings.team_secrets().store_keys
        return [self._view(s, keys.get(s.name)) for s in self.config().stores]

    @staticmethod
    def _view(config: StoreConfig, keys: StoreKeys | None) -> StoreView:
        access = keys.access_key_id if keys else None
        return StoreView(
            name=config.name,
            url=config.url,
            endpoint=config.endpoint,
            region=config.region,
            access_key_id=mask(SecretStr(access)) if access else None,
            secret_access_key=mask(keys.secret_access_key) if keys else None,
        )

    def _store_config(self, name: str | None) -> StoreConfig:
        stores = self.config().stores
        if name is None:
            if len(stores) == 1:
                return stores[0]
            if not stores:
                raise StoreNotFoundError("no team store is set up; add one with: store add")
            names = ", ".join(s.name for s in stores)
            raise StoreNotFoundError(f"several team stores ({names}): name one with --store")
        for store in stores:
            if store.name == name:
                return store
        raise StoreNotFoundError(f"no team store named {name!r}")

    def store(self, name: str | None = None) -> TeamStore:
        """Raises `StoreNotFoundError`: no such store (or several, and no name)."""
        config = self._store_config(name)
        keys = self.settings.team_secrets().store_keys.get(config.name)
        with self._lock:
            cached = self._stores.get(config.name)
            # A boto3 client takes ~0.1 s to build: kept while the store's settings stay.
            if cached is None or cached.config != config or cached.keys != keys:
                cached = self._stores[config.name] = TeamStore(config, keys)
            return cached

    # -- stores --------------------------------------------------------------------------------

    def store_models(self, name: str | None = None, text: str | None = None) -> list[StoreEntry]:
        """What a store holds (from its manifest), filtered by ``text``."""
        manifest: StoreManifest = self.store(name).manifest()
        return manifest.search(text)

    def push(
        self,
        names: list[str],
        store: str | None = None,
        progress: PushProgress | None = None,
    ) -> list[PushResult]:
        """Upload models (every single-file model with a sha256 when ``names`` is empty).

        Raises:
            `ModelNotFoundError`, `UnsupportedOperationError`: a name is not pushable.
            `CorruptModelError`: a file no longer matches its record.
            `StoreAuthError`, `StoreNotFoundError`, `StoreError`.
        """
        target = self.store(store)
        if names:
            records = [self.catalog.find(name) for name in names]
        else:
            records = [r for r in self.catalog.index.list() if _pushable(r)]
        for record in records:
            if not _pushable(record):
                raise UnsupportedOperationError(
                    f"{record.display()} cannot be pushed: only single-file models whose "
                    "sha256 is known (run verify first if it is still being hashed)"
                )
        return [target.push(r, self.records.model_path(r), progress) for r in records]

    # -- peers ---------------------------------------------------------------------------------

    def token(self) -> str | None:
        value = self.settings.team_secrets().team_token
        return value.get_secret_value() if value is not None else None

    def set_token(self, token: str | None = None) -> str:
        """Set the team token (a new random one without ``token``); returns it."""
        token = token or secrets.token_urlsafe(24)
        if len(token) < 16:
            raise SettingsError("a team token must have at least 16 characters")
        team_secrets = self.settings.team_secrets()
        team_secrets.team_token = SecretStr(token)
        self.settings.save_team_secrets(team_secrets)
        return token

    def masked_token(self) -> str | None:
        return mask(self.settings.team_secrets().team_token)

    def add_peer(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidSourceError(f"not a peer URL: {url!r} (expected http://host:port)")
        team = self.config()
        if url.rstrip("/") not in team.peers:
            team.peers.append(url.rstrip("/"))
            self.settings.save_team(team)

    def remove_peer(self, url: str) -> None:
        team = self.config()
        team.peers = [p for p in team.peers if p != url.rstrip("/")]
        self.settings.save_team(team)

    def set_discovery(self, enabled: bool) -> None:
        team = self.config()
        team.discovery = enabled
        self.settings.save_team(team)

    def discovery(self, host: str, port: int) -> Discovery | None:
        """An mDNS announcer and browser for the API at ``host:port`` when discovery is on
        (`TeamConfig.discovery`); the caller starts and stops it (off the event loop)."""
        if not self.config().discovery:
            return None
        return Discovery(self.directory, host, port)

    def peer_urls(self) -> list[str]:
        return self.directory.urls(self.config().peers)

    def share(self, names: list[str], *, everything: bool = False) -> list[str]:
        """Share these models with peers (all of them with ``everything``); returns names."""
        team = self.config()
        if everything:
            team.share_all = True
            self.settings.save_team(team)
            return ["*"]
        shared = []
        for name in names:
            record = self.catalog.find(name)
            if not _pushable(record):
                raise UnsupportedOperationError(
                    f"{record.display()} cannot be shared: only single-file models whose sha256 "
                    "is known"
                )
            if record.hashes["sha256"] not in team.shared:
                team.shared.append(record.hashes["sha256"])
            shared.append(record.display())
        self.settings.save_team(team)
        return shared

    def unshare(self, names: list[str], *, everything: bool = False) -> None:
        team = self.config()
        if everything:
            team.share_all, team.shared = False, []
        for name in names:
            sha256 = self.catalog.find(name).hashes.get("sha256")
            team.shared = [s for s in team.shared if s != sha256]
        self.settings.save_team(team)

    def check_peer(self, address: str | None, authorization: str | None) -> None:
        """Raises `PeerRefusedError`: not from the local network, or not the team token."""
        check_peer_request(address, authorization, self.token())

    def shared_models(self) -> list[StoreEntry]:
        """What this library serves to peers."""
        team = self.config()
        if team.share_all:
            records = [r for r in self.catalog.index.list() if _pushable(r)]
        else:
            records = [r for r in (self._by_sha256(s) for s in team.shared) if r is not None]
        return [self._entry(r) for r in records]

    def shared_file(self, sha256: str) -> tuple[Path, StoreEntry]:
        """The file a peer asks for, if this library has and shares it.

        Raises:
            `ModelNotFoundError`: not here, or not shared (the same answer: a peer learns
                nothing about what is not shared).
        """
        digest = f"sha256:{split_digest(sha256)[1]}"
        team = self.config()
        record = self._by_sha256(digest)
        if record is None or not (team.share_all or digest in team.shared):
            raise ModelNotFoundError(f"no shared model with {digest}")
        return self.records.model_path(record), self._entry(record)

    def _by_sha256(self, digest: str) -> ModelRecord | None:
        for record in self.catalog.index.by_hash(digest):
            if record.hashes.get("sha256") == digest and _pushable(record):
                return record
        return None

    def _entry(self, record: ModelRecord) -> StoreEntry:
        path = self.records.model_path(record)
        return StoreEntry(
            sha256=record.hashes["sha256"],
            name=record.display(),
            type=record.type,
            filename=path.name,
            size=record.size,
            sources=[s.model_dump(mode="json") for s in record.sources],
            pushed_at=record.updated_at,
        )

    # -- what others hold ----------------------------------------------------------------------

    def remote_models(self) -> list[RemoteModel]:
        """Every model the stores and peers hold (one that cannot be asked is left out, and
        logged): for listing, search and preload suggestions."""
        found: list[RemoteModel] = []
        for config in self.config().stores:
            try:
                entries = self.store(config.name).manifest().search()
            except ShelfError as exc:
                log.warning("team store %s: %s", config.name, exc)
                continue
            found += [RemoteModel("store", config.name, e) for e in entries]
        token = self.token()
        if token:
            for url in self.peer_urls():
                try:
                    entries = peer_entries(url, token)
                except (ShelfError, ValidationError) as exc:
                    log.warning("peer %s: %s", url, exc)
                    continue
                found += [RemoteModel("peer", url, e) for e in entries]
        return found


def _pushable(record: ModelRecord) -> bool:
    return record.kind is ModelKind.FILE and bool(record.hashes.get("sha256"))


def _mirror(
    kind: Literal["peer", "store"],
    label: str,
    url: str,
    entry: StoreEntry,
    headers: dict[str, str] | None = None,
) -> Mirror:
    return Mirror(
        kind=kind,
        label=label,
        url=url,
        headers=headers or {},
        size=entry.size or None,
        filename=entry.filename or None,
        model_type=entry.type or None,
        source_ref=entry.sources[0] if entry.sources else None,
    )


class TeamSources:
    """The download engine's `MirrorFinder`: peers first (nearest), then stores."""

    def __init__(self, team: Team) -> None:
        self.team = team

    def find(self, sha256: str) -> list[Mirror]:
        hexdigest = split_digest(sha256)[1]
        mirrors: list[Mirror] = []
        try:
            config = self.team.config()
            token = self.team.token()
        except SettingsError as exc:
            log.warning("team settings unreadable, no peers or stores asked: %s", exc)
            return []
        if token:
            for url in self.team.peer_urls():
                try:
                    data = get_json(f"{url}/model-shelf/peer/models/{hexdigest}", token)
                    entry = StoreEntry.model_validate(data)
                except (ShelfError, ValidationError) as exc:
                    log.info("peer %s has no %s: %s", url, sha256, exc)
                    continue
                blob_url = f"{url}{BLOB_ROUTE.format(sha256=hexdigest)}"
                mirrors.append(_mirror("peer", url, blob_url, entry, auth_headers(token)))
        for store in config.stores:
            try:
                target = self.team.store(store.name)
                size = target.blob_size(sha256)
                if size is None:
                    continue
                entry = target.manifest().models.get(hexdigest) or StoreEntry(
                    sha256=sha256, name="", type="", filename="", size=size
                )
                url = target.presigned_get(sha256)
            except ShelfError as exc:
                log.warning("team store %s not asked for %s: %s", store.name, sha256, exc)
                continue
            mirrors.append(
                _mirror("store", store.name, url, entry.model_copy(update={"size": size}))
            )
        return mirrors

    def mark_bad(self, mirror: Mirror, reason: str) -> None:
        if mirror.kind == "peer":
            self.team.directory.mark_bad(mirror.label, reason)
