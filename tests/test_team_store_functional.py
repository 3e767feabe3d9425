"""Team stores against a real S3 server (SeaweedFS on loopback, one per module; see `seaweed`):
add (wrong keys, missing bucket), push (multipart, verified, resumed after SIGKILL), list and
search the manifest, and downloads that take their bytes from the store before the internet,
resuming after SIGKILL, falling back to the internet when the store refuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from downloads_support import MIB, cli_command, quick_env, quick_settings, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file
from seaweed import ACCESS_KEY, SECRET_KEY, Seaweed, add_store, make_bucket

from model_shelf.library import Shelf
from model_shelf.library.downloads import TaskState
from model_shelf.library.errors import StoreAuthError, StoreNotFoundError

PART = 5 * MIB


@pytest.fixture(scope="module")
def shared_bucket(weed: Seaweed) -> str:
    """One bucket for the module: SeaweedFS gives each bucket volumes of its own."""
    make_bucket(weed.endpoint, "team")
    return "team"


@pytest.fixture
def bucket(shared_bucket: str, request: pytest.FixtureRequest) -> str:
    """``bucket/prefix``: a prefix per test, so tests share the server but not its contents."""
    return f"{shared_bucket}/{request.node.name.replace('_', '-')[:60]}"


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


def imported(shelf: Shelf, tmp_path: Path, size: int, seed: int, name: str) -> Path:
    src = write_model_file(tmp_path / "src" / name, size, seed)
    shelf.import_model(src, "checkpoints")
    return src


def test_wrong_keys_and_a_missing_bucket_are_refused_with_their_own_codes(root, weed, bucket):
    with Shelf.open(root, quick_settings()) as shelf:
        with pytest.raises(StoreAuthError, match="refused our keys"):
            add_store(shelf, weed, bucket, secret_access_key="not-the-secret")
        with pytest.raises(StoreNotFoundError, match="does not exist"):
            add_store(shelf, weed, "no-such-bucket/models")
        assert shelf.team.stores() == []  # nothing saved by a failed check
    # The CLI says the same in one line, with the stable code.
    result = run_cli(
        root,
        "store",
        "add",
        "team",
        f"s3://{bucket}",
        "--endpoint",
        weed.endpoint,
        "--access-key",
        ACCESS_KEY,
        "--secret-key",
        "Zq9-not-the-secret",
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error [STORE_AUTH]:")
    assert "Zq9" not in result.stderr and "SignatureDoesNotMatch" in result.stderr


def test_push_lists_and_searches_without_scanning_and_keys_are_kept_masked(
    root, weed, bucket, tmp_path
):
    with Shelf.open(root, quick_settings()) as shelf:
        add_store(shelf, weed, bucket)
        src = imported(shelf, tmp_path, 12 * MIB, 1, "alpha.safetensors")
        imported(shelf, tmp_path, 1 * MIB, 2, "beta.safetensors")
        results = shelf.team.push([])
        assert sorted(r.name for r in results) == [
            "checkpoints/alpha.safetensors",
            "checkpoints/beta.safetensors",
        ]
        assert sum(r.uploaded_bytes for r in results) == 13 * MIB
        again = shelf.team.push(["alpha.safetensors"])  # the store has it: nothing sent
        assert again[0].uploaded_bytes == 0
        store = shelf.team.store()
        digest = f"sha256:{sha256_of(src)}"
        assert store.blob_size(digest) == 12 * MIB
        blob = store.client.get_object(Bucket=store.config.bucket, Key=store.blob_key(digest))[
            "Body"
        ].read()
        assert blob == src.read_bytes()
        record = json.loads(
            store.client.get_object(Bucket=store.config.bucket, Key=store.record_key(digest))[
                "Body"
            ].read()
        )
        assert record["hashes"]["sha256"] == digest
    listed = json.loads(run_cli(root, "store", "ls", "alp", "--json", check=True).stdout)
    assert [e["name"] for e in listed] == ["checkpoints/alpha.safetensors"]
    shown = run_cli(root, "store", "show", check=True).stdout
    assert "MOD…TEST" in shown and SECRET_KEY not in shown
    secrets = root / ".shelf" / "team-secrets.json"
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert SECRET_KEY not in (root / ".shelf" / "team.json").read_text()


_PUSH_THEN_HANG = textwrap.dedent(
    """
    import sys
    from model_shelf.library import Shelf

    def progress(line):
        print(line, flush=True)
        if line.startswith("part 2/"):
            sys.stdin.readline()  # held here until killed: parts 3.. never sent

    with Shelf.open(sys.argv[1]) as shelf:
        shelf.team.push(["big.safetensors"], progress=progress)
    """
)


def test_a_push_killed_with_sigkill_resumes_with_the_parts_already_sent(
    root, weed, bucket, tmp_path
):
    with Shelf.open(root, quick_settings()) as shelf:
        add_store(shelf, weed, bucket)
        src = imported(shelf, tmp_path, 4 * PART + MIB, 3, "big.safetensors")
    child = subprocess.Popen(
        [sys.executable, "-c", _PUSH_THEN_HANG, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = [child.stdout.readline() for _ in range(2)]
        assert lines[1].startswith("part 2/5 sent"), lines
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL

    result = run_cli(root, "push", "big.safetensors", "--json", check=True)
    (pushed,) = json.loads(result.stdout)
    assert pushed["resumed_parts"] == 2
    assert pushed["uploaded_bytes"] == 2 * PART + MIB
    with Shelf.open(root, quick_settings()) as shelf:
        store = shelf.team.store()
        digest = f"sha256:{sha256_of(src)}"
        body = store.client.get_object(Bucket=store.config.bucket, Key=store.blob_key(digest))[
            "Body"
        ].read()
        assert body == src.read_bytes()
        left = store.client.list_multipart_uploads(Bucket=store.config.bucket, Prefix=bucket[5:])
        assert left.get("Uploads", []) == []


def test_a_file_changed_on_disk_is_not_pushed(root, weed, bucket, tmp_path):
    with Shelf.open(root, quick_settings()) as shelf:
        add_store(shelf, weed, bucket)
        imported(shelf, tmp_path, 2 * MIB, 4, "rot.safetensors")
        path = shelf.model_path(shelf.find("rot.safetensors"))
        with open(path, "r+b") as handle:  # bit rot after the record was written
            handle.seek(MIB)
            handle.write(b"\xff" * 16)
        with pytest.raises(Exception, match="no longer matches its record") as caught:
            shelf.team.push(["rot.safetensors"])
        assert caught.value.code == "CORRUPT_FILE"
        assert shelf.team.store_models() == []
        assert shelf.team.store().blob_size(shelf.find("rot.safetensors").hashes["sha256"]) is None


def pushed(
    root: Path, weed: Seaweed, bucket: str, tmp_path: Path, size: int, seed: int, name: str
) -> Path:
    """The first machine imports a model and pushes it to the store."""
    with Shelf.open(root, quick_settings()) as first:
        add_store(first, weed, bucket)
        src = imported(first, tmp_path, size, seed, name)
        first.team.push([name])
    return src


def second_machine(root2: Path, weed: Seaweed, bucket: str, **settings: object) -> Shelf:
    shelf = Shelf.open(root2, quick_settings(**settings))
    add_store(shelf, weed, bucket)
    return shelf


def test_a_missing_model_comes_from_the_store_before_the_internet(
    root, weed, bucket, server, tmp_path
):
    src = pushed(root, weed, bucket, tmp_path, 9 * MIB, 5, "shared.safetensors")
    served = server.serve("shared.safetensors", src)
    digest = sha256_of(src)
    with second_machine(tmp_path / "machine2", weed, bucket) as shelf:
        # No --type and a URL that names nothing: the store's manifest supplies both.
        task = shelf.downloads.add(server.url("shared.safetensors"), sha256=digest)
        (done,) = shelf.downloads.run_foreground([task.id])
        assert done.state is TaskState.DONE, done.error_message
        assert done.byte_sources == {"store": 9 * MIB}
        assert done.bytes_saved == 9 * MIB
        assert served.requests == []  # the internet was not asked at all
        record = shelf.find("checkpoints/shared.safetensors")
        assert record.hashes["sha256"] == f"sha256:{digest}"
        line = run_cli(tmp_path / "machine2", "tasks", check=True).stdout
        assert "(from store 9.0 MiB; saved 9.0 MiB)" in line, line


def test_a_download_from_the_store_killed_with_sigkill_resumes_where_it_stopped(
    root, weed, bucket, server, tmp_path
):
    size = 32 * MIB
    src = pushed(root, weed, bucket, tmp_path, size, 6, "slow.safetensors")
    served = server.serve("slow.safetensors", src)
    root2 = tmp_path / "machine2"
    second_machine(root2, weed, bucket).close()
    env = quick_env(MODEL_SHELF_DOWNLOAD_BANDWIDTH_LIMIT_BYTES_PER_SECOND=str(8 * MIB))
    command = cli_command(
        root2, "add", server.url("slow.safetensors"), "--sha256", sha256_of(src), "--json"
    )
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial_dir = root2 / ".shelf" / "partial"

    def partial_size() -> int:
        parts = list(partial_dir.glob("*.part")) if partial_dir.exists() else []
        return parts[0].stat().st_size if parts else 0

    try:
        seen = wait_until(
            lambda: child.poll() is None and (n := partial_size()) >= 8 * MIB and n,
            timeout=60,
            what="a quarter of the file on disk",
        )
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    with Shelf.open(root2, quick_settings(lease_seconds=1)) as shelf:
        (task,) = shelf.downloads.list()
        events = []
        shelf.downloads.resume(task.id)
        (done,) = shelf.downloads.run_foreground([task.id], events.append)
    assert done.state is TaskState.DONE, done.error_message
    assert done.byte_sources == {"store": size}
    assert served.requests == []
    counts = [e.bytes_done for e in events if e.state is TaskState.DOWNLOADING]
    # The first events carry the row's last saved count; then the transfer starts from the
    # bytes on disk (a restart would step back to 0 first).
    assert counts == sorted(counts), counts
    assert next(c for c in counts if c > counts[0]) >= seen, (seen, counts)


def test_a_store_that_refuses_our_keys_is_skipped_and_the_internet_serves(
    root, weed, bucket, server, tmp_path
):
    src = pushed(root, weed, bucket, tmp_path, 3 * MIB, 7, "k.safetensors")
    served = server.serve("k.safetensors", src)
    with Shelf.open(tmp_path / "machine2", quick_settings()) as shelf:
        add_store(shelf, weed, bucket, secret_access_key="revoked", check=False)
        task = shelf.downloads.add(
            server.url("k.safetensors"), "checkpoints", sha256=sha256_of(src)
        )
        (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    assert done.byte_sources == {"internet": 3 * MIB}
    assert done.bytes_saved == 0
    assert served.bytes_sent == 3 * MIB
