"""``python -m model_shelf``: the library from a terminal or a script.

Every listing takes ``--json``. Errors print one line, ``error [CODE]: message``, and exit 2.
Long work shows a progress bar when stderr is a terminal and stays quiet when piped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .library import HashTiming, ImportMode, ModelRecord, Shelf, ShelfError
from .library.comfy_settings import COMFY_USER_DIRNAME, load_comfy_settings
from .library.command import cli_command, enclosing_comfy
from .library.downloads import TaskState
from .library.layout import MODEL_TYPES
from .library.logfile import log_to_file
from .library.metadata import Licence
from .library.settings import ROOT_ENV, resolve_root
from .library.units import human_size, parse_size

log = logging.getLogger("model_shelf.cli")

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


# -- output helpers -----------------------------------------------------------


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on a terminal; a silent counter otherwise."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    from tqdm import tqdm

    # A terminal reporting a 0x0 size (a bare pty, some CI consoles) would make tqdm draw
    # nothing; shutil falls back to $COLUMNS/$LINES or 80x24.
    size = shutil.get_terminal_size()
    with tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
        ncols=min(size.columns, 120),
        nrows=size.lines,
    ) as bar:
        yield bar.update


def _size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _record_json(record: ModelRecord) -> dict[str, Any]:
    return record.model_dump(mode="json")


def _print_table(records: Sequence[ModelRecord]) -> None:
    if not records:
        print("no models")
        return
    for r in records:
        sha = (r.sha256 or "sha256:(pending)").split(":", 1)[1][:12]
        flags = [r.health.value] if r.health.value != "ok" else []
        if r.probe.format == "pickle":
            flags.append(
                f"pickle:{r.probe.pickle_verdict.value if r.probe.pickle_verdict else '?'}"
            )
        arch = r.probe.architecture or "-"
        print(
            f"{r.display():60} {human_size(r.size):>10}  {arch:8} {sha}  {' '.join(flags)}".rstrip()
        )


# -- commands -----------------------------------------------------------------


def cmd_import(shelf: Shelf, args: argparse.Namespace) -> int:
    path = Path(args.path)
    with progress_bar(_size_of(path), f"import {path.name}") as advance:
        batch = shelf.import_path(
            path,
            args.type,
            ImportMode(args.mode),
            name=args.name,
            hashing=HashTiming.DEFERRED if args.defer_hash else HashTiming.NOW,
            progress=advance,
        )
    if args.json:
        if len(batch.imported) == 1 and not batch.failed:
            _emit_json(_record_json(batch.imported[0]))  # one model: as before
        else:
            _emit_json(
                {
                    "imported": [_record_json(r) for r in batch.imported],
                    "failed": [
                        {"path": p, "code": e.code, "message": e.message} for p, e in batch.failed
                    ],
                }
            )
    else:
        for record in batch.imported:
            print(f"imported {record.display()} ({human_size(record.size)}, {args.mode})")
        for failed, error in batch.failed:
            print(f"not imported: {failed}: [{error.code}] {error.message}", file=sys.stderr)
        if len(batch.imported) > 1 or batch.failed:
            print(f"{len(batch.imported)} imported, {len(batch.failed)} not imported")
    return EXIT_FAILED if batch.failed else EXIT_OK


def cmd_adopt(shelf: Shelf, args: argparse.Namespace) -> int:
    path = Path(args.path)
    with progress_bar(_size_of(path), f"adopt {path.name}") as advance:
        report = shelf.adopt(path, ImportMode(args.mode), progress=advance)
    if args.json:
        _emit_json(asdict(report))
        return EXIT_OK
    for name in report.imported:
        print(f"adopted   {name}")
    for dup in report.duplicates:
        print(f"identical {dup['path']} == {dup['kept']} (kept once)")
    for skip in report.skipped:
        print(f"left      {skip['path']}: {skip['code']}: {skip['reason']}")
    print(
        f"{len(report.imported)} adopted, {len(report.duplicates)} identical kept once, "
        f"{len(report.skipped)} left in place"
    )
    return EXIT_OK


def cmd_ls(shelf: Shelf, args: argparse.Namespace) -> int:
    records = shelf.list_models(args.type)
    if args.json:
        _emit_json([_record_json(r) for r in records])
    else:
        _print_table(records)
    return EXIT_OK


def cmd_search(shelf: Shelf, args: argparse.Namespace) -> int:
    records = shelf.search(" ".join(args.text), args.type, limit=args.limit)
    if args.json:
        _emit_json([_record_json(r) for r in records])
    else:
        _print_table(records)
    return EXIT_OK


def cmd_show(shelf: Shelf, args: argparse.Namespace) -> int:
    record = shelf.find(args.query)
    if args.json:
        _emit_json(_record_json(record))
        return EXIT_OK
    print(f"{record.display()}  ({record.kind.value}, {human_size(record.size)})")
    print(f"  path:     {shelf.model_path(record)}")
    print(
        f"  health:   {record.health.value}"
        + (f" ({record.health_detail})" if record.health_detail else "")
    )
    for value in record.hashes.values():
        print(f"  {value}")
    probe = record.probe
    arch, kind = probe.architecture or "unknown", probe.kind or "unknown"
    print(f"  format:   {probe.format}, architecture {arch}, kind {kind}")
    if probe.parameter_count:
        print(f"  tensors:  {probe.tensor_count}, parameters {probe.parameter_count:,}")
        print(f"  dtypes:   {probe.dtypes}")
    if probe.pickle_verdict:
        print(f"  pickle:   {probe.pickle_verdict.value} {' '.join(probe.pickle_globals)}")
    for label, values in (("aliases", record.aliases), ("tags", record.tags)):
        if values:
            print(f"  {label}:  {', '.join(values)}")
    for source in record.sources:
        print(f"  source:   {source.url}")
    _print_metadata(record)
    return EXIT_OK


def _print_metadata(record: ModelRecord) -> None:
    """The metadata lines of `show` (issue #12)."""
    view = record.metadata.view()
    if view.status != "matched":
        print(f"  metadata: {view.message}")
    else:
        what = " ".join(x for x in (view.model_name, view.version_name) if x)
        print(f"  metadata: {view.trust.value if view.trust else ''} from {view.source}: {what}")
    rows = [
        ("base model", view.base_model),
        ("triggers", ", ".join(view.trained_words)),
        ("page", view.page_url),
        ("download", view.source_url),
        ("licence", _licence_text(view.licence)),
        (
            "update",
            view.newer_version and f"{view.newer_version.name} ({view.newer_version.source})",
        ),
        ("preview", record.metadata.preview and record.metadata.preview.file),
    ]
    for label, value in rows:
        if value:
            print(f"  {label + ':':<9} {value}")


def _licence_text(licence: Licence | None) -> str | None:
    if licence is None:
        return None
    if licence.name:
        return licence.name
    parts = [f"commercial use: {', '.join(licence.allow_commercial_use) or 'none'}"]
    if licence.allow_no_credit is False:
        parts.append("credit required")
    if licence.allow_derivatives is False:
        parts.append("no derivatives")
    return "; ".join(parts)


def cmd_enrich(shelf: Shelf, args: argparse.Namespace) -> int:
    """Look models up on Civitai / Hugging Face by hash (issue #12)."""
    report = shelf.enrich(args.names, refresh=args.refresh)
    if args.json:
        _emit_json(report.to_dict())
        return EXIT_OK
    if report.offline:
        print("offline (MODEL_SHELF_ENRICH_OFFLINE): nothing asked; metadata not fetched yet")
        return EXIT_OK
    badges = ", ".join(f"{n} {t}" for t, n in sorted(report.trust.items())) or "none"
    print(
        f"{report.checked} looked up: {badges}; {report.unknown} unknown; "
        f"{report.previews} previews; {report.requests} requests"
    )
    for failure in report.failures[:20]:
        print(f"  {failure}", file=sys.stderr)
    return EXIT_FAILED if report.unanswered else EXIT_OK


def cmd_verify(shelf: Shelf, args: argparse.Namespace) -> int:
    targets = [shelf.find(q) for q in args.names] if args.names else shelf.list_models()
    total = sum(r.size for r in targets)
    with progress_bar(total, "verify") as advance:
        # type/name: `Shelf.verify` resolves names, not ids (issue #5 fix)
        results = shelf.verify(
            [r.display() for r in targets] if args.names else (), progress=advance
        )
    if args.json:
        _emit_json([{**asdict(r), "health": r.health.value} for r in results])
    else:
        for r in results:
            print(f"{r.health.value.upper():10} {r.model}" + (f"  {r.detail}" if r.detail else ""))
        bad = sum(r.health.value != "ok" for r in results)
        print(f"{len(results)} verified, {bad} with problems")
    return EXIT_FAILED if any(r.health.value != "ok" for r in results) else EXIT_OK


def cmd_rm(shelf: Shelf, args: argparse.Namespace) -> int:
    record = shelf.remove(args.query)
    if args.json:
        _emit_json(_record_json(record))
    else:
        print(f"removed {record.display()} ({human_size(record.size)})")
    return EXIT_OK


def cmd_rebuild_index(shelf: Shelf, args: argparse.Namespace) -> int:
    count = shelf.rebuild_index()
    if args.json:
        _emit_json({"models": count})
    else:
        print(f"index rebuilt from records: {count} models")
    return EXIT_OK


# -- downloads (issue #3) -----------------------------------------------------


class _TaskProgress:
    """Shows a download task: a tqdm bar on a terminal; on a pipe, only why it waits or fails."""

    def __init__(self, task_id: str, label: str) -> None:
        self.task_id = task_id
        self.label = label
        self.bar: Any = None
        self.said: str | None = None

    def __call__(self, event: Any) -> None:
        if event.task_id != self.task_id:
            return
        if event.message and event.message != self.said and event.error_code is None:
            self.said = event.message
            self._write(f"{event.task_id}: {event.message}")
        if not sys.stderr.isatty() or event.total_bytes is None:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=event.total_bytes,
                desc=self.label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
                ncols=min(shutil.get_terminal_size().columns, 120),
            )
        self.bar.total = event.total_bytes
        self.bar.update(event.bytes_done - self.bar.n)

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _task_json(task: Any) -> dict[str, Any]:
    data = task.model_dump(
        mode="json", exclude={"lease_owner", "lease_expires_at", "error_detail", "url"}
    )
    data["bytes_saved"] = task.bytes_saved
    return {**data, "source": task.shown_source}


def _byte_sources(task: Any) -> str:
    """``from peer 1.0 GB, internet 2.0 MB; saved 1.0 GB`` when a peer or store helped."""
    if not task.bytes_saved:
        return ""
    parts = ", ".join(f"{k} {human_size(v)}" for k, v in sorted(task.byte_sources.items()) if v)
    return f"(from {parts}; saved {human_size(task.bytes_saved)})"


def _task_line(task: Any) -> str:
    size = task.expected_size
    done = f"{human_size(task.bytes_done)}" + (f"/{human_size(size)}" if size else "")
    named = task.name or task.filename
    what = task.model_name or (f"{task.model_type or '?'}/{named}" if named else task.shown_source)
    note = task.error_message or task.wait_reason or ""
    if task.error_code:
        note = f"[{task.error_code}] {note}"
    note = f"{_byte_sources(task)} {note}".strip()
    return f"{task.id}  {task.state.value:11} {done:>21}  {what}  {note}".rstrip()


def _wait_for_tasks(shelf: Shelf, tasks: Sequence[Any], args: argparse.Namespace) -> int:
    """Run the queue in the foreground until ``tasks`` end; Ctrl-C pauses them."""
    ids = [t.id for t in tasks]
    shows = {t.id: _TaskProgress(t.id, t.filename or t.name or t.id) for t in tasks}

    def show(event: Any) -> None:
        for listener in shows.values():
            listener(event)

    # The engine logs for hosts like ComfyUI; here the listener and the final report say it all
    # (without a handler, Python would print its warnings raw on stderr).
    quiet = logging.NullHandler()
    logging.getLogger("model_shelf.downloads").addHandler(quiet)
    try:
        final = shelf.downloads.run_foreground(ids, show)
    except KeyboardInterrupt:
        for listener in shows.values():
            listener.close()
        print(
            f"paused {' '.join(ids)}; continue with: python -m model_shelf resume --wait "
            f"{' '.join(ids)}",
            file=sys.stderr,
        )
        return 130
    finally:
        logging.getLogger("model_shelf.downloads").removeHandler(quiet)
    for listener in shows.values():
        listener.close()
    return _report_tasks(final, args)


def _report_tasks(tasks: Sequence[Any], args: argparse.Namespace) -> int:
    if args.json:
        _emit_json([_task_json(t) for t in tasks] if len(tasks) != 1 else _task_json(tasks[0]))
    failed = [t for t in tasks if t.state.value in ("failed", "cancelled")]
    for task in tasks:
        if task.state.value == "done":
            if not args.json:
                print(
                    f"{task.id}: {task.model_name}"
                    + (f" ({task.wait_reason})" if task.wait_reason else "")
                )
        elif task.state.value in ("failed", "cancelled"):
            code = task.error_code or task.state.value.upper()
            print(
                f"error [{code}]: {task.id}: {task.error_message or task.state.value}",
                file=sys.stderr,
            )
        elif not args.json:
            print(_task_line(task))
    return EXIT_ERROR if failed else EXIT_OK


def _hint_if_nothing_downloads(shelf: Shelf, tasks: Sequence[Any]) -> None:
    """A queued task waits for an engine: say so (on stderr) when no process runs one on this
    library, with the commands that start the downloads."""
    waiting = [t.id for t in tasks if t.waits_for_engine]
    if not waiting or shelf.downloads.engines_running():
        return
    which = waiting[0] if len(waiting) == 1 else "--all"
    print(
        f"note: nothing downloads until ComfyUI or '{cli_command()} serve' runs on this "
        f"library; to download now: {cli_command()} resume --wait {which}",
        file=sys.stderr,
    )


def cmd_add(shelf: Shelf, args: argparse.Namespace) -> int:
    task = shelf.downloads.add(
        args.source, args.type, args.name, args.sha256, priority=args.priority
    )
    if args.no_wait or task.in_terminal_state:
        code = _report_tasks([task], args)
        _hint_if_nothing_downloads(shelf, [task])
        return code
    return _wait_for_tasks(shelf, [task], args)


def cmd_tasks(shelf: Shelf, args: argparse.Namespace) -> int:
    tasks = shelf.downloads.list()
    if args.json:
        _emit_json([_task_json(t) for t in tasks])
    elif not tasks:
        print("no download tasks")
    else:
        for task in tasks:
            print(_task_line(task))
    _hint_if_nothing_downloads(shelf, tasks)
    return EXIT_OK


def _control(action: str) -> Callable[[Shelf, argparse.Namespace], int]:
    def handler(shelf: Shelf, args: argparse.Namespace) -> int:
        service = shelf.downloads
        if args.all:
            tasks = getattr(service, f"{action}_all")()
            if action == "resume" and getattr(args, "wait", False):
                # Waiting for all: the queued and running ones too (taken over from a process
                # that is gone; watched when another one runs them).
                named = {t.id for t in tasks}
                unfinished = [TaskState.QUEUED, TaskState.DOWNLOADING, TaskState.VERIFYING]
                tasks += [t for t in service.list(unfinished) if t.id not in named]
        elif not args.ids:
            raise SystemExit(f"{action}: name task ids, or --all")
        else:
            tasks = [getattr(service, action)(task_id) for task_id in args.ids]
        if action == "resume" and getattr(args, "wait", False) and tasks:
            return _wait_for_tasks(shelf, tasks, args)
        if args.json:
            _emit_json([_task_json(t) for t in tasks])
        else:
            for task in tasks:
                print(_task_line(task))
        return EXIT_OK

    return handler


def add_download_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``add``, ``tasks``, ``pause``, ``resume``, ``cancel``."""
    p = command("add", cmd_add, "download a model into the library (resumable)")
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="https URL, Hugging Face link or org/repo/file, hf://..., Civitai link, "
        "civitai:<version id>, or urn:air:...",
    )
    p.add_argument("--type", help="type folder (default: from the source or the file itself)")
    p.add_argument("--name", help="name under the type folder (default: the file's own name)")
    p.add_argument("--sha256", help="expected sha256; a different file is refused")
    p.add_argument("--priority", type=int, default=0, help="higher downloads first")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="queue it and return (ComfyUI or a later 'resume --wait' downloads it)",
    )
    command("tasks", cmd_tasks, "list download tasks")
    for action, help_text in (
        ("pause", "pause downloads (partial data is kept)"),
        ("resume", "queue paused or failed downloads again"),
        ("cancel", "cancel downloads and remove their partial data"),
    ):
        p = command(action, _control(action), help_text)
        p.add_argument("ids", nargs="*", metavar="ID")
        p.add_argument("--all", action="store_true", help="every task it applies to")
        if action == "resume":
            p.add_argument(
                "--wait",
                action="store_true",
                help="download now, in the foreground (with --all: every unfinished download)",
            )


# -- health (issue #5) ---------------------------------------------------------

_MARK = {"ok": "ok", "info": "info", "warning": "WARNING", "error": "ERROR"}


def cmd_doctor(shelf: Shelf, args: argparse.Namespace) -> int:
    report = shelf.health(sweep=True)  # a one-shot look: every file is stat'ed now
    if args.json:
        _emit_json(report.model_dump(mode="json"))
        return EXIT_OK if report.ok else EXIT_FAILED
    print(f"Model Shelf health of {report.root}: {report.models} models")
    for section in report.sections():
        mark = _MARK[section.severity.value]
        print(f"{mark:8} {section.key:11} {section.count:>6}  {section.title}")
        shown = section.items if section.key == "disk" else section.items[:10]
        for item in shown:
            size = f" ({human_size(item.size)})" if item.size is not None else ""
            print(f"{'':28}{item.name}{size}" + (f": {item.detail}" if item.detail else ""))
        if len(section.items) < section.count or len(shown) < len(section.items):
            print(f"{'':28}... {section.count - len(shown)} more (--json lists up to 100)")
        if section.fix:
            print(f"{'':28}fix: {section.fix}")
    if report.background is not None:
        bg = report.background
        state = "paused" if bg.paused else "running"
        print(f"background hashing {state}: {bg.queued} queued, {bg.reading} reading")
    problems = sum(s.count for s in report.sections() if s.severity.value in ("warning", "error"))
    print("all good" if report.ok else f"{problems} to look at")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_repair(shelf: Shelf, args: argparse.Namespace) -> int:
    if not args.names and not args.all:
        raise SystemExit("repair: name models, or --all")
    results = shelf.repair(args.names, all_broken=args.all)
    if args.json:
        _emit_json([asdict(r) for r in results])
    else:
        for r in results:
            print(f"{'repaired' if r.ok else 'FAILED':9} {r.model}: {r.detail}")
        if not results:
            print("nothing to repair")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def cmd_dedupe(shelf: Shelf, args: argparse.Namespace) -> int:
    if not args.yes:
        groups = shelf.duplicates()
        if args.json:
            _emit_json([g.model_dump(mode="json") for g in groups])
            return EXIT_OK
        for g in groups:
            if g.others:
                print(f"keep {g.keep}; make aliases of: {', '.join(g.others)}")
            if g.across_types:
                print(f"     {g.keep} also in other type folders: {', '.join(g.across_types)}")
        print("nothing to do" if not groups else "run again with --yes to merge")
        return EXIT_OK
    report = shelf.dedupe(set(args.keep or ()))
    if args.json:
        _emit_json(asdict(report))
        return EXIT_OK
    for kept, others in report.merged.items():
        print(f"kept {kept}; now aliases: {', '.join(others)}")
    for skipped in report.skipped:
        print(f"left {skipped}")
    print(f"{len(report.merged)} merged, {human_size(report.bytes_freed)} freed")
    return EXIT_OK


def cmd_purge_ghosts(shelf: Shelf, args: argparse.Namespace) -> int:
    purged = shelf.purge_ghosts(set(args.names) if args.names else None)
    if args.json:
        _emit_json(purged)
    else:
        for name in purged:
            print(f"forgot {name}")
        print(f"{len(purged)} ghosts purged")
    return EXIT_OK


def cmd_clean(shelf: Shelf, args: argparse.Namespace) -> int:
    report = shelf.clean()
    if args.json:
        _emit_json(asdict(report))
    else:
        for path in report.removed:
            print(f"removed {path}")
        print(f"{len(report.removed)} left-overs removed, {human_size(report.bytes_freed)} freed")
    return EXIT_OK


def add_health_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``doctor``, ``repair``, ``dedupe``, ``purge-ghosts``, ``clean``."""
    command("doctor", cmd_doctor, "health report: problems, counts and the fix for each")
    p = command("repair", cmd_repair, "download corrupted or missing models again and verify")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--all", action="store_true", help="every corrupted or missing model")
    p = command("dedupe", cmd_dedupe, "keep one copy of identical models, aliasing the others")
    p.add_argument("--yes", action="store_true", help="do it (without: only show what it would do)")
    p.add_argument("--keep", nargs="*", metavar="NAME", help="keep these copies (type/name)")
    p = command("purge-ghosts", cmd_purge_ghosts, "forget models whose files are gone")
    p.add_argument("names", nargs="*", metavar="NAME", help="type/name (default: every ghost)")
    command("clean", cmd_clean, "remove left-over temporaries and partial downloads")


# -- serve (issue #6) ---------------------------------------------------------

SERVE_DEFAULT_PORT = 8765
SERVE_LOG = "serve.log"


def cmd_serve(shelf: Shelf, args: argparse.Namespace) -> int:
    """Run the HTTP API and the sidebar as a page of its own, until Ctrl-C."""
    from aiohttp import web

    from .server_routes import standalone_app

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: serving on {args.host}: anyone who can reach it can change the library "
            "(the API has no login; it only refuses requests from other web sites)",
            file=sys.stderr,
        )
    app = standalone_app(shelf, watch=not args.no_watch, host=args.host)
    discovery = shelf.team.discovery(args.host, args.port)  # issue #13: opt-in mDNS
    if discovery is not None:

        async def announce(app: web.Application) -> None:
            await asyncio.get_running_loop().run_in_executor(None, discovery.start)

        async def withdraw(app: web.Application) -> None:
            await asyncio.get_running_loop().run_in_executor(None, discovery.stop)

        app.on_startup.append(announce)
        app.on_cleanup.append(withdraw)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    # issue #11: what the server does goes to a rotated file under the library's state folder.
    with log_to_file(shelf.layout.logs_dir, SERVE_LOG) as log_path:
        print(
            f"Model Shelf: http://{shown}:{args.port}/ (library {shelf.root}, log {log_path}); "
            "Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        log.info("serving http://%s:%d/ (library %s)", shown, args.port, shelf.root)
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            print=None,
            access_log=None,
            shutdown_timeout=5.0,
            handler_cancellation=True,
        )
        log.info("stopped")
    return EXIT_OK


def add_serve_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``serve``."""
    p = command("serve", cmd_serve, "serve the HTTP API and the sidebar page (until Ctrl-C)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=SERVE_DEFAULT_PORT, help=f"port (default: {SERVE_DEFAULT_PORT})"
    )
    p.add_argument(
        "--no-watch", action="store_true", help="do not watch the folders for changes meanwhile"
    )


# -- workflows (issue #4) -------------------------------------------------------


def _read_json_file(path: Path) -> Any:
    """The JSON in ``path`` (``-``: stdin).

    Raises:
        `InvalidWorkflowError`: unreadable, or not JSON.
    """
    from .library.errors import InvalidWorkflowError

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        return json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidWorkflowError(f"cannot read {path}: {exc}", path=str(path)) from exc


def _write_json_file(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (``-``: stdout)."""
    from .library.fsutil import atomic_write_bytes

    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
    else:
        atomic_write_bytes(path.absolute(), text.encode("utf-8"))


def cmd_stamp(shelf: Shelf, args: argparse.Namespace) -> int:
    source = Path(args.workflow)
    report = shelf.stamp_workflow(_read_json_file(source))
    target = Path(args.output) if args.output else source
    _write_json_file(target, report.workflow)
    summary = {
        "output": str(target),
        "stamped": report.stamped,
        "no_source": report.no_source,
        "not_in_library": report.not_in_library,
    }
    out = sys.stderr if str(target) == "-" else sys.stdout
    if args.json:
        json.dump(summary, out, indent=2)
        out.write("\n")
        return EXIT_OK
    for name in report.stamped:
        print(f"stamped   {name}", file=out)
    for name in report.no_source:
        print(f"no source {name} (not stamped: nowhere to download it from)", file=out)
    for name in report.not_in_library:
        print(f"missing   {name} (not in the library)", file=out)
    print(f"{len(report.stamped)} models stamped into {target}", file=out)
    return EXIT_OK


def cmd_lock(shelf: Shelf, args: argparse.Namespace) -> int:
    report = shelf.lock_workflow(_read_json_file(Path(args.workflow)))
    lockfile = report.lockfile.model_dump(mode="json")
    for name in report.missing:
        print(f"warning: {name} is not in the library; not locked", file=sys.stderr)
    if args.output:
        _write_json_file(Path(args.output), lockfile)
        if args.json:
            _emit_json({"output": args.output, **lockfile, "missing": report.missing})
        else:
            print(f"locked {len(report.lockfile.models)} models into {args.output}")
    else:
        _emit_json(lockfile)
    return EXIT_FAILED if report.missing else EXIT_OK


def cmd_fetch_lock(shelf: Shelf, args: argparse.Namespace) -> int:
    from .library.workflows import read_lockfile

    lockfile = read_lockfile(_read_json_file(Path(args.lockfile)))
    bars: dict[str, _TaskProgress] = {}

    def show(event: Any) -> None:
        bar = bars.get(event.task_id)
        if bar is None:
            bar = bars[event.task_id] = _TaskProgress(event.task_id, event.task_id)
        bar(event)

    quiet = logging.NullHandler()  # as `add`: the report below says what went wrong
    logging.getLogger("model_shelf.downloads").addHandler(quiet)
    try:
        results = shelf.fetch_lock(lockfile, wait=not args.no_wait, listener=show)
    finally:
        logging.getLogger("model_shelf.downloads").removeHandler(quiet)
        for bar in bars.values():
            bar.close()
    failed = [r for r in results if r.state in ("failed", "unavailable")]
    if args.json:
        _emit_json([asdict(r) for r in results])
    else:
        for r in results:
            where = f" as {r.name}" if r.name and r.name != r.model else ""
            task = f" (task {r.task_id})" if r.task_id and r.state == "queued" else ""
            note = f": {r.message}" if r.message else ""
            print(f"{r.state:11} {r.model}{where}{task}{note}")
    for r in failed:
        print(f"error [FETCH_FAILED]: {r.model}: {r.message or r.state}", file=sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK


def add_workflow_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``stamp``, ``lock``, ``fetch-lock``."""
    p = command(
        "stamp",
        cmd_stamp,
        "write model metadata (name, url, folder, sha256) into a workflow for the library "
        "models it uses, so ComfyUI's missing-models dialog and other users can get them",
    )
    p.add_argument("workflow", metavar="WORKFLOW.json", help="a workflow saved from ComfyUI")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write here (- for stdout) instead of updating WORKFLOW.json in place",
    )
    p = command(
        "lock",
        cmd_lock,
        "export the exact models a workflow (or API prompt) uses: name, type, size, sha256, "
        "sources",
    )
    p.add_argument("workflow", metavar="WORKFLOW.json")
    p.add_argument("-o", "--output", metavar="LOCKFILE", help="write here (default: stdout)")
    p = command("fetch-lock", cmd_fetch_lock, "get every model of a lockfile into the library")
    p.add_argument("lockfile", metavar="LOCKFILE")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="queue the downloads and return (ComfyUI or 'resume --wait' downloads them)",
    )


# -- the team: stores and peers (issue #13) -------------------------------------


def _secret_arg(value: str | None) -> str | None:
    """``-`` reads the secret from stdin (so it stays out of the shell history and ps)."""
    if value == "-":
        return sys.stdin.readline().strip()
    return value


def cmd_store_add(shelf: Shelf, args: argparse.Namespace) -> int:
    view = shelf.team.add_store(
        args.name,
        args.url,
        endpoint=args.endpoint,
        access_key_id=args.access_key,
        secret_access_key=_secret_arg(args.secret_key),
        region=args.region,
        part_size_bytes=args.part_size_mib * 1024 * 1024 if args.part_size_mib else None,
        check=not args.no_check,
    )
    if args.json:
        _emit_json(asdict(view))
    else:
        where = view.endpoint or "AWS"
        print(f"store {view.name}: {view.url} at {where} (key {view.access_key_id})")
    return EXIT_OK


def cmd_store_show(shelf: Shelf, args: argparse.Namespace) -> int:
    views = shelf.team.stores()
    if args.json:
        _emit_json([asdict(v) for v in views])
    elif not views:
        print("no team stores; add one with: store add NAME s3://bucket/prefix --endpoint URL")
    for view in [] if args.json else views:
        print(f"{view.name:16} {view.url}  {view.endpoint or 'AWS'}  key {view.access_key_id}")
    return EXIT_OK


def cmd_store_rm(shelf: Shelf, args: argparse.Namespace) -> int:
    shelf.team.remove_store(args.name)
    print(f"removed store {args.name} (its bucket is untouched)")
    return EXIT_OK


def _print_entries(entries: Sequence[Any], where: str = "") -> None:
    for e in entries:
        print(f"{e.sha256[7:19]}  {human_size(e.size):>10}  {e.name}{where}")


def cmd_store_ls(shelf: Shelf, args: argparse.Namespace) -> int:
    entries = shelf.team.store_models(args.store, " ".join(args.text) or None)
    if args.json:
        _emit_json([e.model_dump(mode="json") for e in entries])
    else:
        _print_entries(entries)
        print(f"{len(entries)} models")
    return EXIT_OK


def cmd_push(shelf: Shelf, args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    results = shelf.team.push(args.names, args.store, progress=say)
    if args.json:
        _emit_json([asdict(r) for r in results])
    else:
        for r in results:
            kept = f", {r.resumed_parts} parts kept from before" if r.resumed_parts else ""
            print(f"pushed {r.name} ({human_size(r.uploaded_bytes)} sent{kept})")
    return EXIT_OK


def cmd_remote(shelf: Shelf, args: argparse.Namespace) -> int:
    text = " ".join(args.text).lower()
    found = [m for m in shelf.remote_models() if text in f"{m.entry.name} {m.entry.sha256}"]
    if args.json:
        _emit_json(
            [{"where": m.where, "label": m.label, **m.entry.model_dump(mode="json")} for m in found]
        )
    for m in [] if args.json else found:
        _print_entries([m.entry], f"  ({m.where} {m.label})")
    return EXIT_OK


def cmd_peers_ls(shelf: Shelf, args: argparse.Namespace) -> int:
    team = shelf.team
    config = team.config()
    data = {
        "peers": team.peer_urls(),
        "bad": team.directory.bad(),
        "discovery": config.discovery,
        "token": team.masked_token(),
        "share_all": config.share_all,
        "shared": [e.name for e in team.shared_models()],
    }
    if args.json:
        _emit_json(data)
        return EXIT_OK
    print(f"discovery (mDNS): {'on' if config.discovery else 'off'}; token: {data['token']}")
    for url in data["peers"]:
        print(f"peer  {url}")
    for url, reason in data["bad"].items():
        print(f"bad   {url}: {reason}")
    shared = "every model" if config.share_all else ", ".join(data["shared"]) or "nothing"
    print(f"shared with peers: {shared}")
    return EXIT_OK


def cmd_peers_add(shelf: Shelf, args: argparse.Namespace) -> int:
    shelf.team.add_peer(args.url)
    print(f"peer {args.url} added")
    return EXIT_OK


def cmd_peers_rm(shelf: Shelf, args: argparse.Namespace) -> int:
    shelf.team.remove_peer(args.url)
    print(f"peer {args.url} removed")
    return EXIT_OK


def cmd_peers_token(shelf: Shelf, args: argparse.Namespace) -> int:
    token = shelf.team.set_token(_secret_arg(args.set))
    # Shown once, in full, when made here: the other machines need it (`peers token --set -`).
    print(token if not args.set else f"team token set ({shelf.team.masked_token()})")
    return EXIT_OK


def cmd_peers_share(shelf: Shelf, args: argparse.Namespace) -> int:
    names = shelf.team.share(args.names, everything=args.all)
    print("sharing with peers: " + ", ".join(names))
    return EXIT_OK


def cmd_peers_unshare(shelf: Shelf, args: argparse.Namespace) -> int:
    shelf.team.unshare(args.names, everything=args.all)
    print("no longer shared: " + (", ".join(args.names) or "everything"))
    return EXIT_OK


def cmd_peers_discovery(shelf: Shelf, args: argparse.Namespace) -> int:
    shelf.team.set_discovery(args.state == "on")
    print(f"mDNS discovery {args.state} (applies when serve or ComfyUI starts)")
    return EXIT_OK


def add_team_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``store add|ls|show|rm``, ``push``, ``remote``, ``peers ...``."""
    store = command("store", cmd_store_show, "team stores: S3-compatible buckets")
    verbs = store.add_subparsers(dest="verb", metavar="VERB")

    def verb(parent: Any, name: str, handler: Callable[..., int], text: str) -> Any:
        p = parent.add_parser(name, help=text, description=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    p = verb(verbs, "add", cmd_store_add, "add a team store (its bucket is checked first)")
    p.add_argument("name")
    p.add_argument("url", metavar="s3://BUCKET/PREFIX")
    p.add_argument("--endpoint", help="S3-compatible server, e.g. http://10.0.0.5:8333")
    p.add_argument("--access-key")
    p.add_argument("--secret-key", help="the secret, or - to read it from stdin")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--part-size-mib", type=int, help="multipart part size (default 64)")
    p.add_argument("--no-check", action="store_true", help="save without asking the bucket")
    p = verb(verbs, "ls", cmd_store_ls, "list (and search) the models a store holds")
    p.add_argument("text", nargs="*")
    p.add_argument("--store", help="which store (needed when there are several)")
    verb(verbs, "show", cmd_store_show, "the configured stores (keys masked)")
    p = verb(verbs, "rm", cmd_store_rm, "forget a store (the bucket is untouched)")
    p.add_argument("name")

    p = command("push", cmd_push, "upload models to a team store by sha256 (resumable, verified)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--store")

    p = command("remote", cmd_remote, "models the team stores and LAN peers hold")
    p.add_argument("text", nargs="*")

    peers = command("peers", cmd_peers_ls, "LAN peers: list, add, share, token, discovery")
    verbs = peers.add_subparsers(dest="verb", metavar="VERB")
    verb(verbs, "ls", cmd_peers_ls, "known peers, what this library shares, the token")
    p = verb(verbs, "add", cmd_peers_add, "ask this peer too (http://host:port)")
    p.add_argument("url")
    p = verb(verbs, "rm", cmd_peers_rm, "stop asking this peer")
    p.add_argument("url")
    p = verb(verbs, "token", cmd_peers_token, "make a new team token (or --set one)")
    p.add_argument("--set", metavar="TOKEN", help="the team's token, or - to read it from stdin")
    for name, handler, text in (
        ("share", cmd_peers_share, "serve these models to peers"),
        ("unshare", cmd_peers_unshare, "stop serving these models to peers"),
    ):
        p = verb(verbs, name, handler, text)
        p.add_argument("names", nargs="*", metavar="NAME")
        p.add_argument("--all", action="store_true")
    p = verb(verbs, "discovery", cmd_peers_discovery, "find peers with mDNS (opt-in)")
    p.add_argument("state", choices=["on", "off"])


# -- usage and advice (issue #14) ---------------------------------------------


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "never"


def cmd_usage(shelf: Shelf, args: argparse.Namespace) -> int:
    report = shelf.usage()
    if args.json:
        _emit_json(report.model_dump(mode="json"))
        return EXIT_OK
    print(
        f"{report.models} models, {report.used_models} used, {report.runs} runs recorded; "
        f"never used: {report.never_used_models} ({human_size(report.never_used_bytes)} of "
        f"{human_size(report.total_bytes)})"
    )
    week = sum(d.uses for d in report.days[-7:])
    print(f"uses in the last 7 days: {week}, in 30 days: {sum(d.uses for d in report.days)}")
    for item in report.items[: args.limit]:
        run = f", {item.mean_run_seconds:.1f} s a run" if item.mean_run_seconds else ""
        print(
            f"{item.uses:6d}  {item.uses_7d:4d}/7d {item.uses_30d:4d}/30d  "
            f"{_when(item.last_used):16s}  {human_size(item.size):>10s}  {item.name}{run}"
        )
    return EXIT_OK


def cmd_cleanup(shelf: Shelf, args: argparse.Namespace) -> int:
    target = parse_size(args.free)
    if not args.yes:
        plan = shelf.cleanup_plan(target)
        if args.json:
            _emit_json(plan.model_dump(mode="json"))
            return EXIT_OK
        for item in plan.items:
            print(f"{item.action:8s} {human_size(item.size):>10s}  {item.name}: {item.reason}")
        print(
            f"frees {human_size(plan.planned_bytes)} of {human_size(target)} asked"
            + ("" if plan.enough else " (not enough: nothing else can go safely)")
            + f"; {plan.recent_kept} used in the last 7 days kept"
        )
        if plan.not_refetchable:
            print(f"never used but not fetchable again (kept): {', '.join(plan.not_refetchable)}")
        print("run again with --yes to do it" if plan.items else "nothing to do")
        return EXIT_OK
    result = shelf.cleanup(target)
    if args.json:
        _emit_json(result.model_dump(mode="json"))
        return EXIT_OK
    for name in result.archived:
        print(f"archived {name} (fetched again when a workflow asks for it)")
    for name in result.deduplicated:
        print(f"merged {name} (its name is an alias now)")
    for skipped in result.skipped:
        print(f"left {skipped}")
    print(f"{human_size(result.freed_bytes)} freed")
    return EXIT_OK


def cmd_alternatives(shelf: Shelf, args: argparse.Namespace) -> int:
    found = shelf.alternatives(args.type, args.name)
    if args.json:
        _emit_json([a.model_dump(mode="json") for a in found])
        return EXIT_OK
    for alternative in found:
        print(f"{alternative.name}: {alternative.reason}")
    if not found:
        print(f"no {args.type} model in the library")
    return EXIT_OK


def cmd_preload(shelf: Shelf, args: argparse.Namespace) -> int:
    suggestions = shelf.preload_suggestions()
    if args.fetch is not None or args.all:
        chosen = [s for s in suggestions if args.all or s.name in (args.fetch or ())]
        tasks = [shelf.preload(s) for s in chosen]
        if args.json:
            _emit_json([t.model_dump(mode="json") for t in tasks])
        for suggestion, task in zip(chosen, tasks, strict=True):
            if not args.json:
                print(f"queued {suggestion.name}: download {task.id}")
        return EXIT_OK
    if args.json:
        _emit_json([s.model_dump(mode="json") for s in suggestions])
        return EXIT_OK
    for suggestion in suggestions:
        print(f"{suggestion.name}: {suggestion.reason}")
    print("nothing to preload" if not suggestions else "fetch with: preload --fetch NAME")
    return EXIT_OK


def add_usage_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("usage", cmd_usage, "model uses from ComfyUI runs: per day, workflows, run time")
    p.add_argument("--limit", type=int, default=50, help="models listed (default 50)")
    p = command(
        "cleanup",
        cmd_cleanup,
        "what to remove to free space (never a model used in the last 7 days); --yes does it",
    )
    p.add_argument("--free", required=True, metavar="SIZE", help="how much: 50GiB, 1.5TB...")
    p.add_argument("--yes", action="store_true", help="remove them (records kept as stubs)")
    p = command("alternatives", cmd_alternatives, "closest library models for a missing one")
    p.add_argument("type")
    p.add_argument("name")
    p = command("preload", cmd_preload, "models used often that this library lacks")
    p.add_argument("--fetch", nargs="*", metavar="NAME", help="queue these downloads")
    p.add_argument("--all", action="store_true", help="with --fetch: every suggestion")


# -- parser -------------------------------------------------------------------


def library_root(explicit: str | None) -> Path:
    """The root a command works on: ``--root``; else, run from a ComfyUI's ``custom_nodes``,
    the root that ComfyUI uses (its settings file, ``$MODEL_SHELF_ROOT``, ``<ComfyUI>/model-shelf``:
    `comfy_settings`); else ``$MODEL_SHELF_ROOT`` or a per-user folder.

    Raises:
        `SettingsError`: that ComfyUI's settings file is invalid (we refuse to guess a root).
    """
    comfy = enclosing_comfy()
    if explicit or comfy is None:
        return resolve_root(explicit)
    settings = load_comfy_settings(comfy / COMFY_USER_DIRNAME)
    return resolve_root(settings.root, comfy_base=comfy)


def _root_rule() -> str:
    rule = "--root, else $" + ROOT_ENV + ", else a per-user folder"
    if enclosing_comfy() is not None:
        rule = "--root, else the root of the ComfyUI this folder belongs to"
    try:
        return f"{rule}; here: {library_root(None)}"
    except ShelfError as exc:  # an invalid settings file: say so, the command itself refuses
        return f"{rule}; here: unknown ({exc.message})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=cli_command(),
        description="Model Shelf: one verified model library for every ComfyUI install.",
        epilog=f"Library root: {_root_rule()}",
    )
    parser.add_argument("--root", help="library root (default: see below)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    types = ", ".join(MODEL_TYPES)
    p = command(
        "import",
        cmd_import,
        "import a model file, sharded set or folder model; a plain folder: each model in it",
    )
    p.add_argument("path")
    p.add_argument("--type", required=True, help=f"type folder: {types}")
    p.add_argument("--mode", choices=[m.value for m in ImportMode], default="copy")
    p.add_argument(
        "--name", help="name under the type folder (subfolders allowed: sdxl/x.safetensors)"
    )
    p.add_argument(
        "--defer-hash", action="store_true", help="record now, compute digests later (verify)"
    )

    p = command("adopt", cmd_adopt, "adopt a ComfyUI models/ folder into the library")
    p.add_argument("path")
    p.add_argument("--mode", choices=["move", "link"], default="move")

    p = command("ls", cmd_ls, "list models")
    p.add_argument("--type", help="only this type folder")

    p = command("search", cmd_search, "search names, aliases, tags and sources")
    p.add_argument("text", nargs="+")
    p.add_argument("--type")
    p.add_argument("--limit", type=int, default=50)

    p = command("show", cmd_show, "show one model by name, alias or hash")
    p.add_argument("query", metavar="NAME|HASH")

    p = command("enrich", cmd_enrich, "look models up on Civitai and Hugging Face by hash")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument(
        "--refresh", action="store_true", help="ask again even if cached answers are fresh"
    )

    p = command("verify", cmd_verify, "re-hash models and compare with their records")
    p.add_argument("names", nargs="*", metavar="NAME")

    p = command("rm", cmd_rm, "delete a model: file and record together")
    p.add_argument("query", metavar="NAME")

    command("rebuild-index", cmd_rebuild_index, "recreate the index from the records")
    add_download_commands(command)  # issue #3
    add_health_commands(command)  # issue #5
    add_serve_command(command)  # issue #6
    add_workflow_commands(command)  # issue #4
    add_team_commands(command)  # issue #13
    add_usage_commands(command)  # issue #14
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Shelf.open(library_root(args.root)) as shelf:
            return args.handler(shelf, args)
    except ShelfError as exc:
        if getattr(args, "json", False):
            _emit_json({"error": exc.to_dict()})
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Piped into `head` and the reader left: not worth a traceback. Point stdout at devnull
        # so the interpreter's final flush does not fail again.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK
