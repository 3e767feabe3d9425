"""`Shelf`: the one object everything outside ``library/`` talks to.

It wires the services together (layout, records, index, importer, adopter, verifier, sync)
and delegates; it holds no logic of its own beyond choosing which service answers.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from .adopt import Adopter, AdoptReport
from .alternatives import Alternative, find_alternatives
from .catalog import Catalog
from .cleanup_advice import CleanupPlan, CleanupResult, archive, plan_cleanup
from .downloads import ProgressBus, TaskStore
from .downloads.engine import DownloadEngine
from .downloads.progress import ProgressListener
from .downloads.tasks import DownloadTask, TaskOrigin, TaskState
from .editor import ModelEditor
from .enrich import Enricher, EnrichReport, EnrichWorker
from .errors import (
    CorruptModelError,
    IndexStoreError,
    ModelNotFoundError,
    SettingsError,
    ShelfError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from .fetching import FetchProgress, ModelFetcher, ShouldStop
from .hashing import Hashes, ProgressFn
from .health import (
    BackgroundHasher,
    Cleaner,
    CleanReport,
    DedupeReport,
    Deduplicator,
    Doctor,
    DuplicateGroup,
    HealthReport,
    Repairer,
    RepairResult,
    find_duplicates,
    find_orphans,
    repairable,
)
from .health.disk import disk_report
from .health.report import DiskReport
from .health.sweeps import forget_orphans, note_sync
from .imports import HashTiming, ImportBatch, Importer, ImportMode, UnitHashes, find_unit
from .index import IndexStore, SortOrder
from .installer import DownloadService, LibraryInstaller, quarantine_dir
from .layout import Layout, check_type
from .metadata import MetadataView, UserMetadata
from .preload import PreloadSuggestion, RemoteListing, preload_suggestions
from .query import Facets, ModelPage, ModelQuery, run_query
from .query import facets as query_facets
from .records import HashState, Health, ModelKind, ModelRecord, RecordStore, SourceRef
from .removal import Remover
from .settings import DownloadSettings, EnrichSettings, HealthSettings
from .stored_settings import SettingsFile, StoredLimits, StoredSecrets
from .sync import Reconciler, SyncReport, scan_folders, units_to_import
from .team import RemoteModel, Team, TeamSources
from .usage_log import UsageStore
from .usage_report import UsageReport, failing_loads, model_usage, usage_report
from .verify import Verifier, VerifyResult
from .watch import Watcher
from .workflows import LockFetch, Lockfile, LockReport, StampReport, fetch_lock, lock, stamp

log = logging.getLogger("model_shelf")


class Shelf:
    """A library root, opened. Safe to use from several threads and processes at once.

    Use `Shelf.open` (which also syncs the index with the folders) and `close`, or ``with``.
    """

    def __init__(
        self,
        root: Path,
        download_settings: DownloadSettings | None = None,
        *,
        enrich_settings: EnrichSettings | None = None,
    ) -> None:
        self.layout = Layout(Path(root).absolute())
        self.layout.ensure()
        self.records = RecordStore(self.layout)
        self.index = _open_index(self.layout)
        self.catalog = Catalog(self.records, self.index)
        self.remover = Remover(self.layout)
        self.importer = Importer(self.layout, self.catalog, self.remover)
        self.adopter = Adopter(self.layout, self.catalog, self.importer, self.remover)
        self.verifier = Verifier(self.catalog)
        self.reconciler = Reconciler(self.layout, self.catalog, self.importer, self.remover)
        self.last_sync: SyncReport | None = None
        # issue #13: team stores and LAN peers; the engine asks them first (by sha256).
        self.team = Team(SettingsFile(self.layout), self.catalog, self.records)
        self.downloads = _open_downloads(self, download_settings)  # issue #3
        self.editor = ModelEditor(self.layout, self.catalog, self.reconciler)  # issue #6
        # issue #5: health services; watching starts only on request (`start_watching`).
        self.health_settings = HealthSettings.from_env()
        self.repairer = Repairer(
            self.layout, self.catalog, self.remover, self.verifier, self.downloads, self.importer
        )
        self.hasher: BackgroundHasher | None = None
        self.watcher: Watcher | None = None
        self._unsubscribe_repairs: Callable[[], None] | None = None
        self.fetcher = ModelFetcher(self.downloads, self.catalog, self.records)  # issue #4
        self.usage_log = UsageStore(self.layout.state_db)  # issue #14: runs and uses
        # issue #12: metadata by hash; the background worker starts only on request.
        self.enricher = Enricher(
            self.layout,
            self.catalog,
            lambda: self.downloads.settings,
            enrich_settings or EnrichSettings.from_env(),
        )
        self.enrich_worker: EnrichWorker | None = None

    @classmethod
    def open(
        cls,
        root: Path,
        download_settings: DownloadSettings | None = None,
        *,
        enrich_settings: EnrichSettings | None = None,
    ) -> Shelf:
        """Open ``root`` (created if needed) and bring the index up to date with the folders.

        Raises:
            `RootUnavailableError`: the root cannot be created or written.
        """
        shelf = cls(root, download_settings, enrich_settings=enrich_settings)
        shelf.sync()
        return shelf

    @property
    def root(self) -> Path:
        return self.layout.root

    def close(self) -> None:
        self.stop_enriching()  # issue #12
        self.stop_watching()  # issue #5
        self.index.close()
        self.downloads.store.close()  # issue #3
        self.usage_log.close()  # issue #14

    def __enter__(self) -> Shelf:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------

    def list_models(
        self,
        model_type: str | None = None,
        order: SortOrder = SortOrder.TYPE,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelRecord]:
        if model_type is not None:
            model_type = check_type(model_type)
        return self.index.list(model_type, order, limit, offset)

    def search(
        self, text: str, model_type: str | None = None, limit: int = 50
    ) -> list[ModelRecord]:
        if model_type is not None:
            model_type = check_type(model_type)
        return self.index.search(text, model_type, limit)

    def find(self, query: str, model_type: str | None = None) -> ModelRecord:
        """One model by ``type/name``, name, alias or hash prefix. See `Catalog.find`."""
        return self.catalog.find(query, model_type)

    def model_path(self, record: ModelRecord) -> Path:
        return self.records.model_path(record)

    # -- changing ------------------------------------------------------------

    def import_model(
        self,
        path: Path,
        model_type: str,
        mode: ImportMode = ImportMode.COPY,
        *,
        name: str | None = None,
        hashing: HashTiming = HashTiming.NOW,
        sources: Sequence[SourceRef] = (),
        progress: ProgressFn | None = None,
    ) -> ModelRecord:
        """Import a file, sharded set or folder. See `Importer.import_unit` for errors."""
        model_type = check_type(model_type)
        unit = find_unit(Path(path).absolute())
        return self.importer.import_unit(
            unit, model_type, mode, name=name, hashing=hashing, sources=sources, progress=progress
        )

    def import_path(
        self,
        path: Path,
        model_type: str,
        mode: ImportMode = ImportMode.COPY,
        *,
        name: str | None = None,
        hashing: HashTiming = HashTiming.NOW,
        progress: ProgressFn | None = None,
    ) -> ImportBatch:
        """Import what ``path`` holds (`sync.units_to_import`): one model, or each model of a
        plain folder, named by its path inside the folder (under ``name/`` if given). A model
        that cannot be imported is listed in ``failed``; the others are imported all the same.

        Raises:
            As `import_model`, when ``path`` is one model or holds none.
        """
        model_type = check_type(model_type)
        problems: list[str] = []
        top = Path(path).absolute()
        units = units_to_import(top, problems)
        batch = ImportBatch(
            failed=[
                (p.split(": ", 1)[0], CorruptModelError(p, path=p.split(": ", 1)[0]))
                for p in problems
            ]
        )
        if len(units) == 1 and units[0].path == top:
            batch.imported.append(
                self.importer.import_unit(
                    units[0], model_type, mode, name=name, hashing=hashing, progress=progress
                )
            )
            return batch
        for unit in units:
            # A sharded set keeps its shard names: its name is the folder it sits in.
            where = unit.path.parent if unit.kind is ModelKind.SHARDED else unit.path
            inside = "" if where == top else where.relative_to(top).as_posix()
            joined = "/".join(part for part in (name.strip("/") if name else "", inside) if part)
            try:
                batch.imported.append(
                    self.importer.import_unit(
                        unit,
                        model_type,
                        mode,
                        name=joined or None,
                        hashing=hashing,
                        progress=progress,
                    )
                )
            except ShelfError as exc:
                batch.failed.append((str(unit.path), exc))
        return batch

    def adopt(
        self,
        models_dir: Path,
        mode: ImportMode = ImportMode.MOVE,
        progress: ProgressFn | None = None,
    ) -> AdoptReport:
        """Adopt a ComfyUI ``models/`` folder. See `Adopter.adopt`."""
        return self.adopter.adopt(Path(models_dir), mode, progress)

    def remove(self, query: str) -> ModelRecord:
        """Delete a model's files and its record together (journaled), and drop it from the index.

        Raises:
            `ModelNotFoundError`, `AmbiguousModelError`: as `find`.
        """
        record = self.find(query)
        paths = [self.records.model_path(record), *self.records.file_paths(record)]
        unique = list(dict.fromkeys(paths))  # a single-file model's path is also its only file
        self.remover.delete(
            [*unique, self.records.sidecar_path(record)], reason="removed by user", record=record
        )
        self.index.delete(record.id)
        return record

    def verify(
        self,
        queries: Sequence[str] = (),
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> list[VerifyResult]:
        """Re-hash the named models (all when none named) and record what was found."""
        records = [self.find(q) for q in queries] if queries else self.index.list()
        return [self.verifier.verify(r, progress, cancel) for r in records]

    def hash_pending(self, progress: ProgressFn | None = None) -> list[VerifyResult]:
        """Compute full digests for models recorded with a fingerprint only."""
        pending = [r for r in self.index.list() if r.hash_state is HashState.PENDING]
        return [self.verifier.verify(r, progress) for r in pending]

    def sync(self, full: bool = False) -> SyncReport:
        """Stat-only reconcile of index and folders (see `Reconciler`); ``full`` looks inside
        every folder, not only those whose mtime moved."""
        self.last_sync = self.reconciler.sync(full)
        note_sync(self.index, self.last_sync)  # what it saw, into the health report's figures
        return self.last_sync

    def rebuild_index(self) -> int:
        """Recreate the index from the sidecars alone; returns the number of models.

        A sidecar that cannot be read stays listed as a damaged record (`Health.DAMAGED`),
        reported by `health` and logged, so no model silently disappears.
        """
        self.index.clear()
        report = SyncReport()
        found = [
            (self.reconciler.read_record(sidecar, report), mtime_ns)
            for sidecar, mtime_ns in scan_folders(self.layout).sidecars.items()
        ]
        count = self.index.upsert_many(found)
        self.sync()
        return count

    # -- watching and health (issue #5) --------------------------------------------------------

    def start_watching(self, settings: HealthSettings | None = None) -> Watcher:
        """Keep the index current from file events and hash/verify in the background, until
        `stop_watching` or `close`. Once only; returns the running `Watcher`.

        The CLI's one-shot commands never call this; ComfyUI (and ``serve``) do.

        Args:
            settings (`HealthSettings`, *optional*): default `health_settings`.
        """
        if self.watcher is not None:
            return self.watcher
        settings = settings or self.health_settings
        self.health_settings = settings
        self.hasher = BackgroundHasher(self.layout, self.catalog, self.verifier, settings)
        # The watcher's catch-up sweep is the health report's sweep: its figures are kept.
        self.watcher = Watcher(
            self.layout, self.reconciler, self.hasher, settings, sweep=self.health_sweep
        )
        if settings.auto_repair:
            self.hasher.subscribe(self._auto_repair)
            self._unsubscribe_repairs = self.downloads.subscribe(self.repairer.on_progress)
        self.hasher.start()
        self.watcher.start()
        self.repairer.finish_ready()  # repairs whose downloads ended while we were away
        return self.watcher

    def stop_watching(self, timeout: float = 10.0) -> None:
        """Stop the watcher and the background hasher and join their threads."""
        if self.watcher is not None:
            self.watcher.stop(timeout)
            self.watcher = None
        if self.hasher is not None:
            self.hasher.stop(timeout)
            self.hasher = None
        if self._unsubscribe_repairs is not None:
            self._unsubscribe_repairs()
            self._unsubscribe_repairs = None

    def _auto_repair(self, result: VerifyResult) -> None:
        """Hasher listener (``auto_repair``): queue the download of a model found corrupted.

        Missing models are not fetched by themselves: a deleted file is usually meant.
        """
        if result.retry or result.health is not Health.CORRUPTED or result.model_id is None:
            return
        record = self.index.get(result.model_id)
        if record is None or not repairable(record):
            return
        try:
            self.repairer.start(record)
        except (ShelfError, OSError) as exc:
            log.warning("Model Shelf: cannot repair %s by itself: %s", record.display(), exc)

    def health(self, *, sweep: bool = False) -> HealthReport:
        """The health report (``doctor``): every section with its count, items and fix.

        Built from the counts the index keeps and the last sweep's figures (the report says
        when that ran): a few rows are read, whatever the library's size. Repairs whose
        downloads ended meanwhile are finished first.

        Args:
            sweep (`bool`, *optional*): stat every file and look for left-overs first
                (`health_sweep`; seconds at 100,000 models), as ``doctor`` does.
        """
        self.repairer.finish_ready()
        return self._doctor().report(sweep=sweep)

    def health_sweep(self) -> SyncReport:
        """Stat every recorded file and look for left-overs, and keep what was found for the
        health report; see `Doctor.sweep`."""
        return self._doctor().sweep()

    def repair(
        self, queries: Sequence[str] = (), *, all_broken: bool = False
    ) -> list[RepairResult]:
        """Download corrupted or missing models again from their sources, and verify them.

        Args:
            queries (`Sequence[str]`): models to repair (names, aliases, hashes).
            all_broken (`bool`, *optional*): repair every corrupted or missing model instead.

        Raises:
            `ModelNotFoundError`, `AmbiguousModelError`: as `find`.
        """
        if all_broken:
            records = [
                *self.index.with_health("corrupted"),
                *self.index.with_health("missing"),
                *self.index.with_health("damaged"),
            ]
        else:
            records = [self.find(q) for q in queries]
        return [self.repairer.repair_now(r) for r in records]

    def duplicates(self) -> list[DuplicateGroup]:
        """Groups of models with the same content (see `find_duplicates`)."""
        return find_duplicates(self.catalog)

    def dedupe(self, keep: set[str] | None = None, only: set[str] | None = None) -> DedupeReport:
        """Keep one copy of each duplicated model; see `Deduplicator.dedupe`."""
        deduplicator = Deduplicator(self.records, self.catalog, self.remover, self.verifier)
        return deduplicator.dedupe(keep, only)

    def purge_ghosts(self, names: set[str] | None = None) -> list[str]:
        """Forget models whose files are gone; see `Cleaner.purge_ghosts`."""
        return Cleaner(self.layout, self.catalog, self.remover).purge_ghosts(names)

    def clean(self) -> CleanReport:
        """Remove abandoned temporaries and partial downloads; see `find_orphans`."""
        orphans = find_orphans(
            self.layout, self._task_state, self.health_settings.stale_partial_seconds
        )
        report = Cleaner(self.layout, self.catalog, self.remover).clean(orphans)
        forget_orphans(self.index)  # the health report's kept figures no longer list them
        return report

    def disk_usage(self) -> DiskReport:
        """Free space of the library's disk and use per type folder."""
        return disk_report(
            self.layout,
            self.index,
            self.health_settings.disk_warn_used_fraction,
            self.downloads.settings.free_space_margin_bytes,
        )

    def _doctor(self) -> Doctor:
        return Doctor(
            self.layout,
            self.catalog,
            self.reconciler,
            self.health_settings,
            self.downloads.settings.free_space_margin_bytes,
            self._task_state,
            self.hasher,
            lambda: failing_loads(self.index, self.usage_log),  # issue #14
        )

    def _task_state(self, task_id: str) -> str | None:
        try:
            return self.downloads.get(task_id).state.value
        except TaskNotFoundError:
            return None

    # -- the HTTP API and the sidebar (issue #6) -----------------------------------------------

    def get(self, model_id: str) -> ModelRecord:
        """The model whose record id is ``model_id``.

        Raises:
            `ModelNotFoundError`: no model has that id.
        """
        record = self.index.get(model_id)
        if record is None:
            raise ModelNotFoundError(f"no model with id {model_id!r}")
        return record

    def query_models(self, query: ModelQuery) -> ModelPage:
        """A page of light model summaries: search, filters, sort, window. See `run_query`."""
        return run_query(self.index, query)

    def facets(self) -> Facets:
        """The values the list's filters can take, with counts. See `facets`."""
        return query_facets(self.index)

    def edit_model(
        self,
        model_id: str,
        *,
        name: str | None = None,
        aliases: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> ModelRecord:
        """Rename a model (its files and record move together; the old name stays an alias so
        workflows using it still resolve) and/or replace its aliases or tags.

        Raises:
            `ModelNotFoundError`: no model has that id.
            `UnsafeNameError`: a name or alias would leave the type folder or is invalid.
            `NameClashError`: another model holds the new name.
            `UnsupportedOperationError`: a sharded set cannot be renamed as one.
        """
        record = self.get(model_id)
        if name is not None:
            record = self.editor.rename(record, name)
        if aliases is not None or tags is not None:
            record = self.editor.relabel(record, aliases, tags)
        return record

    def import_received(
        self, path: Path, model_type: str, name: str | None, hashes: Hashes
    ) -> ModelRecord:
        """Import a file received whole into ``.shelf/partial/`` (an upload), hashed while it
        arrived: moved into place (a rename), its digests not read again.

        Raises:
            As `import_model`.
        """
        path = Path(path).absolute()
        return self.importer.import_unit(
            find_unit(path),
            check_type(model_type),
            ImportMode.MOVE,
            name=name,
            known_hashes=UnitHashes(files={path.name: hashes}, model=hashes),
        )

    def remove_model(self, model_id: str) -> ModelRecord:
        """`remove` the model whose record id is ``model_id``.

        Raises:
            `ModelNotFoundError`: no model has that id.
        """
        return self.remove(self.get(model_id).display())

    def start_repairs(
        self, model_ids: Sequence[str] = (), *, all_broken: bool = False
    ) -> list[RepairResult]:
        """Queue the re-download of broken models for the running engine (not in the foreground,
        unlike `repair`); each finishes when its download ends (`Repairer.on_progress`).

        Raises:
            `ModelNotFoundError`: an id is unknown.
        """
        if all_broken:
            records = self.index.with_health("corrupted") + self.index.with_health("missing")
            records = [r for r in records if repairable(r)] + self.index.with_health("damaged")
        else:
            records = [self.get(model_id) for model_id in model_ids]
        results = []
        for record in records:
            if record.health is Health.DAMAGED:  # from the file at hand: no download
                results.append(self.repairer.recreate(record))
                continue
            try:
                job = self.repairer.start(record)
            except ShelfError as exc:
                results.append(RepairResult(record.display(), False, exc.message))
                continue
            results.append(RepairResult(job.model, True, "download queued", job.task_id))
        return results

    def retry_download(self, task_id: str) -> DownloadTask:
        """Queue a paused or failed download again; a cancelled one is added again afresh.

        Raises:
            `TaskNotFoundError`: no such task.
        """
        task = self.downloads.get(task_id)
        if task.state is TaskState.CANCELLED:
            return self.downloads.add(
                task.source,
                task.model_type,
                task.name,
                task.expected_sha256,
                task.priority,
                task.origin,
            )
        return self.downloads.resume(task_id)

    @property
    def stored_settings(self) -> SettingsFile:
        """Settings saved in the library root (limits, credentials)."""
        return SettingsFile(self.layout)

    def update_download_settings(
        self, limits: StoredLimits | None = None, secrets: StoredSecrets | None = None
    ) -> DownloadSettings:
        """Save limits and/or credentials in the library root and use them from now on.

        Concurrency and the bandwidth limit apply to the running engine at once.

        Raises:
            `SettingsError`: the stored files cannot be read.
            `StorageFullError`: they cannot be written.
        """
        stored = self.stored_settings
        if limits is not None:
            stored.save_limits(limits)
        if secrets is not None:
            stored.save_secrets(secrets)
        settings = stored.apply(self.base_download_settings)
        self.downloads.settings = settings
        self.downloads.engine.apply_settings(settings)
        return settings

    # -- workflows and fetching (issue #4) -------------------------------------------------------

    def fetch_model(
        self,
        source: str,
        model_type: str,
        name: str | None = None,
        sha256: str | None = None,
        *,
        progress: FetchProgress | None = None,
        should_stop: ShouldStop | None = None,
        origin: TaskOrigin = TaskOrigin.USER,
    ) -> ModelRecord:
        """The model a source names: from the library (matched by sha256, source or name), else
        downloaded now, waiting for it. See `ModelFetcher.fetch` for arguments and errors."""
        return self.fetcher.fetch(
            source,
            model_type,
            name,
            sha256,
            progress=progress,
            should_stop=should_stop,
            origin=origin,
        )

    def wait_for_download(
        self,
        task_id: str,
        *,
        progress: FetchProgress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> str:
        """Wait for a queued download; returns the model's name under its type folder (as
        ComfyUI lists it).

        Raises:
            As `ModelFetcher.wait`; `ModelNotFoundError` if the model is gone again.
        """
        task = self.fetcher.wait(task_id, progress=progress, should_stop=should_stop)
        return self.fetcher.name_of(task)

    def stamp_workflow(self, workflow: dict[str, object]) -> StampReport:
        """Write model metadata (``properties.models``) for the library models a UI workflow
        uses; see `workflows.stamp`."""
        return stamp(workflow, self)

    def lock_workflow(self, workflow: dict[str, object]) -> LockReport:
        """The exact model set of a workflow or API prompt; see `workflows.lock`."""
        return lock(workflow, self)

    def remote_models(self) -> list[RemoteModel]:
        """What the team stores and LAN peers hold (issue #13): one entry per store or peer
        and model; one that cannot be asked is left out (and logged). Blocking."""
        return self.team.remote_models()

    def fetch_lock(
        self, lockfile: Lockfile, wait: bool = True, listener: ProgressListener | None = None
    ) -> list[LockFetch]:
        """Get every model of a lockfile into the library; see `workflows.fetch_lock`."""
        return fetch_lock(lockfile, self, wait, listener)

    # -- usage and advice (issue #14) ----------------------------------------------------------

    def usage(self, now: float | None = None) -> UsageReport:
        """Uses per model (totals, last use, per day, workflows, run times) and for the whole
        library (per day, bytes by type, never-used bytes). See `usage_report`."""
        return usage_report(self.index, self.usage_log, now)

    def cleanup_plan(self, target_bytes: int, now: float | None = None) -> CleanupPlan:
        """The dry-run list of what to remove to free ``target_bytes`` (see `plan_cleanup`):
        extra copies of duplicates first, then never or rarely used models that a source can
        fetch again; never a model used in the last 7 days."""
        usage = {item.id: item for item in model_usage(self.index, self.usage_log, now)}
        return plan_cleanup(
            target_bytes, self.index.list(), usage, self.index.duplicate_groups(), now
        )

    def cleanup(
        self, target_bytes: int, ids: Sequence[str] | None = None, now: float | None = None
    ) -> CleanupResult:
        """Carry out the plan for ``target_bytes`` (made afresh, so nothing used since the dry
        run is removed): duplicates are merged (their names become aliases), the others' files
        are removed and their records kept as re-downloadable stubs.

        Args:
            target_bytes (`int`): how much to free.
            ids (`Sequence[str]`, *optional*): only these of the plan's items.
        """
        plan = self.cleanup_plan(target_bytes, now)
        wanted = set(ids) if ids is not None else None
        items = [i for i in plan.items if wanted is None or i.id in wanted]
        result = CleanupResult(freed_bytes=0)
        dupes = {i.name for i in items if i.action == "dedupe"}
        if dupes:
            merged = self.dedupe(keep={i.duplicate_of for i in items if i.duplicate_of}, only=dupes)
            gone = {name for names in merged.merged.values() for name in names}
            for item in items:
                if item.action == "dedupe" and item.name in gone:
                    result.deduplicated.append(item.name)
                    result.freed_bytes += item.size
                elif item.action == "dedupe":
                    result.skipped.append(f"{item.name}: not merged ({'; '.join(merged.skipped)})")
        for item in items:
            if item.action != "archive":
                continue
            record = self.index.get(item.id)
            if record is None or record.health is not Health.OK:
                result.skipped.append(f"{item.name}: changed since the plan was made")
                continue
            archive(record, self.records, self.catalog, self.remover)
            result.archived.append(item.name)
            result.freed_bytes += item.size
        return result

    def alternatives(
        self, model_type: str, name: str, context: Sequence[str] = ()
    ) -> list[Alternative]:
        """The closest models the library has for a missing ``type``/``name`` (same kind and
        architecture first, then name similarity), each with its reason.

        Args:
            context (`Sequence[str]`): other model names the same workflow uses.
        """
        model_type = check_type(model_type)
        known = next(iter(self.index.by_name(name.replace("\\", "/"), model_type)), None)
        others = [r for value in context for r in self.catalog.find_all(value)[:1]]
        return find_alternatives(
            name, model_type, self.index.list(model_type), known=known, context=others
        )

    def preload_suggestions(
        self, remote: Sequence[RemoteListing] | None = None
    ) -> list[PreloadSuggestion]:
        """Models used often that this library lacks: its archived stubs, and models the team
        stores and LAN peers hold (`remote_models`, or ``remote`` when given) that were used
        here before. See `preload_suggestions`."""
        usage = {item.id: item for item in model_usage(self.index, self.usage_log)}
        if remote is None:
            remote = self._team_listing()
        return preload_suggestions(self.index.list(), usage, remote)

    def _team_listing(self) -> list[RemoteListing]:
        """The team's models (issue #13) with the uses this library's log has of each name
        (the log keeps names and this library's record ids, which a model gone from here no
        longer matches)."""
        logged: dict[str, tuple[int, float | None]] = {}
        for used in self.usage_log.models(time.time()).values():
            uses, last = logged.get(used.model, (0, None))
            if used.last_used is not None:
                last = used.last_used if last is None else max(last, used.last_used)
            logged[used.model] = (uses + used.uses, last)
        listing = []
        for held in self.remote_models():
            entry = held.entry
            url = next((s.get("url") for s in entry.sources if s.get("url")), None)
            # No origin (imported from a disk, then pushed): its digest is the source, and the
            # stores and peers that hold it are the only ones asked.
            source = str(url) if url is not None else entry.sha256
            uses, last = logged.get(entry.name, (0, None))
            listing.append(
                RemoteListing(
                    type=entry.type,
                    name=entry.name.split("/", 1)[-1],
                    size=entry.size,
                    sha256=entry.sha256,
                    source=source,
                    where=f"{held.where} {held.label}",
                    uses=uses,
                    last_used=datetime.fromtimestamp(last, timezone.utc) if last else None,
                )
            )
        return listing

    def preload(self, suggestion: PreloadSuggestion) -> DownloadTask:
        """Fetch one suggestion through the download queue (an archived stub is repaired, so
        it keeps its record).

        Raises:
            `ShelfError`: the download cannot be queued (a refused source, no source).
        """
        if suggestion.model_id is not None:
            result = self.start_repairs([suggestion.model_id])[0]
            if not result.ok or result.task_id is None:
                raise ShelfError(f"cannot fetch {suggestion.name} again: {result.detail}")
            return self.downloads.get(result.task_id)
        if suggestion.source is None:
            raise ShelfError(f"{suggestion.name} has no source to fetch it from")
        name = suggestion.name.split("/", 1)[1]
        return self.downloads.add(suggestion.source, suggestion.type, name, suggestion.sha256)

    # -- metadata from Civitai and Hugging Face (issue #12) ---------------------------------------

    def enrich(self, queries: Sequence[str] = (), refresh: bool = False) -> EnrichReport:
        """Look the named models (all when none named) up by hash on Civitai and, for those with
        a Hugging Face source, on the Hub; store what was learnt in their records and fetch
        previews. Cached answers younger than a week are used without asking; ``refresh`` asks
        again. See `Enricher.enrich`.

        Raises:
            `ModelNotFoundError`, `AmbiguousModelError`: as `find`.
        """
        records = [self.find(q) for q in queries] if queries else self.index.list()
        return self.enricher.enrich(records, refresh)

    def enrich_ids(self, model_ids: Sequence[str], refresh: bool = False) -> EnrichReport:
        """`enrich` by record ids (all models when none given).

        Raises:
            `ModelNotFoundError`: an id is unknown.
        """
        records = [self.get(i) for i in model_ids] if model_ids else self.index.list()
        return self.enricher.enrich(records, refresh)

    def metadata(self, model_id: str) -> MetadataView:
        """What is known about a model from outside, the user's own values over it.

        Raises:
            `ModelNotFoundError`: no model has that id.
        """
        return self.get(model_id).metadata.view()

    def edit_metadata(self, model_id: str, user: UserMetadata) -> MetadataView:
        """Set the user's own metadata values (they win over every source, and no enrichment
        changes them).

        Raises:
            `ModelNotFoundError`: no model has that id.
        """
        record = self.get(model_id)
        record.metadata.user = user
        self.catalog.save(record)
        return record.metadata.view()

    def queue_update(self, model_id: str) -> DownloadTask:
        """Download the newer Civitai version of a model through the download queue.

        Raises:
            `ModelNotFoundError`: no model has that id.
            `UnsupportedOperationError`: no newer version is known.
        """
        record = self.get(model_id)
        newer = record.metadata.view().newer_version
        if newer is None:
            raise UnsupportedOperationError(
                f"no newer version of {record.display()} is known; look it up first (enrich)"
            )
        return self.downloads.add(newer.source, record.type)

    def start_enriching(self) -> EnrichWorker | None:
        """Look models up in the background (new ones first, then stale ones) until
        `stop_enriching` or `close`; nothing when offline or background lookups are off."""
        settings = self.enricher.settings
        if self.enrich_worker is None and settings.background and not settings.offline:
            self.enrich_worker = EnrichWorker(self.enricher)
            self.enrich_worker.start()
        return self.enrich_worker

    def stop_enriching(self, timeout: float = 10.0) -> None:
        if self.enrich_worker is not None:
            self.enrich_worker.stop(timeout)
            self.enrich_worker = None


def _open_index(layout: Layout) -> IndexStore:
    """Open the index; one that is not a database any more is set aside and rebuilt later."""
    try:
        index = IndexStore(layout.index_db)
    except (IndexStoreError, sqlite3.DatabaseError):
        broken = layout.index_db.with_name(layout.index_db.name + ".broken")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(layout.index_db) + suffix)
            if src.exists():
                src.replace(Path(str(broken) + suffix))
        return IndexStore(layout.index_db)
    try:
        if not index.counts_match_rows():  # rows written by a version that keeps no counts
            index.recount()
    except IndexStoreError as exc:  # busy (another process writing): the next sweep recounts
        log.warning("Model Shelf: the health counts were not checked: %s", exc)
    return index


# --- downloads (issue #3) ---------------------------------------------------------------------


def _open_downloads(shelf: Shelf, settings: DownloadSettings | None) -> DownloadService:
    """Wire the download queue: store, engine (with the library as its installer), service.

    ``settings`` default to the environment's (`DownloadSettings.from_env`).
    """
    settings = settings or DownloadSettings.from_env()
    # issue #6: values saved from the sidebar go over these (kept to apply later changes to).
    shelf.base_download_settings = settings
    try:
        settings = SettingsFile(shelf.layout).apply(settings)
    except SettingsError as exc:
        log.warning("Model Shelf: ignoring the stored download settings: %s", exc)
    store = TaskStore(shelf.layout.state_db)
    credentials = SettingsFile(shelf.layout).task_credentials  # issue #15
    installer = LibraryInstaller(shelf.layout, shelf.catalog, shelf.importer, shelf.remover)
    engine = DownloadEngine(
        store,
        shelf.layout.partial_dir,
        quarantine_dir(shelf.layout),
        settings,
        installer,
        delete_files=shelf.remover.delete,
        events=ProgressBus(),
        mirrors=TeamSources(shelf.team),
        credentials=credentials,
    )
    service = DownloadService(store, engine, installer, shelf.catalog, settings, credentials)
    try:
        service.forget_stale_credentials()
    except (ShelfError, OSError) as exc:  # tried again at the next start
        log.warning("Model Shelf: could not clean up download credentials: %s", exc)
    return service
