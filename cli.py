"""``python -m model_shelf``: the library from a terminal or a script.

Every listing takes ``--json``. Errors print one line, ``error [CODE]: message``, and exit 2.
Long work shows a progress bar when stderr is a terminal and stays quiet when piped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .library import HashTiming, ImportMode, ModelRecord, Shelf, ShelfError
from .library.layout import MODEL_TYPES
from .library.settings import ROOT_ENV, resolve_root

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


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


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
        print(f"{r.display():60} {_human(r.size):>10}  {arch:8} {sha}  {' '.join(flags)}".rstrip())


# -- commands -----------------------------------------------------------------


def cmd_import(shelf: Shelf, args: argparse.Namespace) -> int:
    path = Path(args.path)
    with progress_bar(_size_of(path), f"import {path.name}") as advance:
        record = shelf.import_model(
            path,
            args.type,
            ImportMode(args.mode),
            name=args.name,
            hashing=HashTiming.DEFERRED if args.defer_hash else HashTiming.NOW,
            progress=advance,
        )
    if args.json:
        _emit_json(_record_json(record))
    else:
        print(f"imported {record.display()} ({_human(record.size)}, {args.mode})")
    return EXIT_OK


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
    print(f"{record.display()}  ({record.kind.value}, {_human(record.size)})")
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
    return EXIT_OK


def cmd_verify(shelf: Shelf, args: argparse.Namespace) -> int:
    targets = [shelf.find(q) for q in args.names] if args.names else shelf.list_models()
    total = sum(r.size for r in targets)
    with progress_bar(total, "verify") as advance:
        results = shelf.verify([r.id for r in targets] if args.names else (), progress=advance)
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
        print(f"removed {record.display()} ({_human(record.size)})")
    return EXIT_OK


def cmd_rebuild_index(shelf: Shelf, args: argparse.Namespace) -> int:
    count = shelf.rebuild_index()
    if args.json:
        _emit_json({"models": count})
    else:
        print(f"index rebuilt from records: {count} models")
    return EXIT_OK


# -- parser -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model_shelf",
        description="Model Shelf: one verified model library for every ComfyUI install.",
        epilog=f"Library root: --root, else ${ROOT_ENV}, else {resolve_root(None)}",
    )
    parser.add_argument("--root", help=f"library root (default: ${ROOT_ENV} or a per-user folder)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    types = ", ".join(MODEL_TYPES)
    p = command("import", cmd_import, "import a model file, sharded set or folder")
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

    p = command("verify", cmd_verify, "re-hash models and compare with their records")
    p.add_argument("names", nargs="*", metavar="NAME")

    p = command("rm", cmd_rm, "delete a model: file and record together")
    p.add_argument("query", metavar="NAME")

    command("rebuild-index", cmd_rebuild_index, "recreate the index from the records")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Shelf.open(resolve_root(args.root)) as shelf:
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
