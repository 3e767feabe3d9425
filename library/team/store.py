"""`TeamStore`: an S3-compatible bucket that holds models by sha256, through boto3.

Layout under the store's prefix (content-addressed, so a blob never changes once written):

```
<prefix>/blobs/sha256/<hex>           the model file's bytes (metadata: sha256, size)
<prefix>/records/sha256/<hex>.json    its sidecar record, as pushed
<prefix>/manifest.json                what the store holds: `StoreManifest`, read by `ls`
```

Uploads are multipart and resumable: an upload left unfinished (a crash, a kill) is found again
by its key, and every part S3 already holds whose ETag equals the MD5 of our part is kept. Each
part is sent with its ``Content-MD5`` (the server checks it), the whole file's sha256 is computed
on the same read and compared with the record before the upload is completed, and the finished
object's size and metadata are checked. Downloads do not go through boto3: `presigned_get` gives
a short-lived URL that the download engine fetches like any other (Range resume, hashing on the
way).

Every boto3 failure becomes a typed error in `_store_error`, and only there. Keys are never
logged: they live in `TeamSecrets` and reach boto3 only.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ..errors import (
    CorruptModelError,
    ShelfError,
    StoreAuthError,
    StoreError,
    StoreNotFoundError,
)
from ..hashing import MultiHasher, split_digest
from ..records import ModelRecord, utc_now
from ..stored_settings import StoreConfig, StoreKeys

log = logging.getLogger("model_shelf.team")

PRESIGN_SECONDS = 3600
"""Life of a download URL; the engine asks again for every attempt."""
MANIFEST_VERSION = 1

_AUTH_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken"}
)
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})


class StoreEntry(BaseModel):
    """One model in a store's manifest."""

    sha256: str
    """``sha256:<hex>``."""
    name: str
    """``type/name`` on the machine that pushed it."""
    type: str
    filename: str
    size: int
    sources: list[dict[str, Any]] = Field(default_factory=list)
    pushed_at: datetime = Field(default_factory=utc_now)
    pushed_by: str = ""


class StoreManifest(BaseModel):
    """``manifest.json``: every model the store holds, by sha256 hex, so listing and searching
    read one small object instead of listing the bucket."""

    version: int = MANIFEST_VERSION
    models: dict[str, StoreEntry] = Field(default_factory=dict)

    def search(self, text: str | None = None) -> list[StoreEntry]:
        """Entries whose name, file name or sha256 contains ``text`` (all without one)."""
        needle = (text or "").lower()
        found = [
            e
            for e in self.models.values()
            if not needle or needle in f"{e.name} {e.filename} {e.sha256}".lower()
        ]
        return sorted(found, key=lambda e: e.name)


@dataclass(frozen=True)
class PushResult:
    """What `TeamStore.push` did for one model."""

    name: str
    sha256: str
    size: int
    uploaded_bytes: int
    """Bytes sent in this run (0 when the store had the blob; less than ``size`` on a resume)."""
    resumed_parts: int
    """Parts an earlier, interrupted upload had sent already."""


PushProgress = Callable[[str], None]
"""Told one line per step (``part 2/5 sent``), for a terminal."""


def _store_error(exc: Exception, config: StoreConfig, what: str) -> ShelfError:
    """A boto3/botocore failure -> our typed error (the one place that reads them)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    where = f"team store {config.name} ({config.url})"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _AUTH_CODES or status == 403:
            return StoreAuthError(
                f"{where} refused our keys while trying to {what} ({code or status}); "
                f"check them with: store add {config.name} {config.url} --endpoint ..."
            )
        if code in _MISSING_BUCKET_CODES or (what == "check the bucket" and status == 404):
            return StoreNotFoundError(f"{where}: bucket {config.bucket!r} does not exist")
        message = error.get("Message") or code
        return StoreError(f"{where}: could not {what}: {message} ({status})")
    if isinstance(exc, NoCredentialsError):
        return StoreAuthError(f"{where} has no keys; add them with: store add ... --access-key")
    if isinstance(exc, EndpointConnectionError):
        return StoreError(f"{where}: cannot reach {config.endpoint or 'the S3 endpoint'}")
    if isinstance(exc, (BotoCoreError, OSError)):
        return StoreError(f"{where}: could not {what}: {exc}")
    raise exc  # not a store failure: a bug, let it show


class TeamStore:
    """One configured store (`StoreConfig`) with its keys. Blocking: call from a worker thread.

    Args:
        config (`StoreConfig`): bucket, prefix, endpoint, part size.
        keys (`StoreKeys`, *optional*): the access key; None uses boto3's own lookup (the
            environment, ``~/.aws``), which is what AWS users expect.
    """

    def __init__(self, config: StoreConfig, keys: StoreKeys | None) -> None:
        self.config = config
        self.keys = keys
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- keys of the layout ------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        prefix = self.config.prefix
        return "/".join((prefix, *parts)) if prefix else "/".join(parts)

    def blob_key(self, sha256: str) -> str:
        return self._key("blobs", "sha256", split_digest(sha256)[1])

    def record_key(self, sha256: str) -> str:
        return self._key("records", "sha256", split_digest(sha256)[1] + ".json")

    @property
    def manifest_key(self) -> str:
        return self._key("manifest.json")

    # -- the client --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        with self._client_lock:
            return self._client or self._make_client()

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        keys = self.keys
        self._client = boto3.client(
            "s3",
            endpoint_url=self.config.endpoint,
            region_name=self.config.region,
            aws_access_key_id=keys.access_key_id if keys else None,
            aws_secret_access_key=keys.secret_access_key.get_secret_value() if keys else None,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},  # S3-compatible servers on an IP:port
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        return self._client

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(**kwargs)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _store_error(exc, self.config, what) from None

    # -- reading -----------------------------------------------------------------------------

    def check(self) -> None:
        """Make sure the bucket exists and our keys may use it.

        Raises:
            `StoreAuthError`, `StoreNotFoundError`, `StoreError`.
        """
        # A listing, not a HEAD: a HEAD's error has no body to say which problem it is.
        self._call("check the bucket", "list_objects_v2", Bucket=self.config.bucket, MaxKeys=1)

    def manifest(self) -> StoreManifest:
        """What the store holds (an empty manifest for a new store).

        Raises:
            `StoreAuthError`, `StoreNotFoundError`, `StoreError`: also for a damaged manifest.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.config.bucket, Key=self.manifest_key)[
                "Body"
            ].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return StoreManifest()
            raise _store_error(exc, self.config, "read the manifest") from None
        except (BotoCoreError, OSError) as exc:
            raise _store_error(exc, self.config, "read the manifest") from None
        try:
            return StoreManifest.model_validate_json(body)
        except ValidationError:
            raise StoreError(
                f"team store {self.config.name}: {self.manifest_key} is not a Model Shelf "
                "manifest; push a model to write a new one"
            ) from None

    def blob_size(self, sha256: str) -> int | None:
        """Size of the blob with this sha256 if the store has it complete, else None.

        Raises:
            `StoreAuthError`, `StoreNotFoundError`, `StoreError`.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.config.bucket, Key=self.blob_key(sha256))
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                return None
            raise _store_error(exc, self.config, "look for a blob") from None
        except (BotoCoreError, OSError) as exc:
            raise _store_error(exc, self.config, "look for a blob") from None
        if head.get("Metadata", {}).get("sha256") != split_digest(sha256)[1]:
            return None  # not written by a verified push: never trusted
        return int(head["ContentLength"])

    def presigned_get(self, sha256: str, expires: int = PRESIGN_SECONDS) -> str:
        """A URL that GETs the blob (with Range) without our keys, for ``expires`` seconds."""
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.config.bucket, "Key": self.blob_key(sha256)},
            ExpiresIn=expires,
        )

    # -- writing -----------------------------------------------------------------------------

    def push(
        self, record: ModelRecord, path: Path, progress: PushProgress | None = None
    ) -> PushResult:
        """Upload one single-file model, its record, and its manifest entry.

        Raises:
            `CorruptModelError`: the file no longer matches its record's sha256 (nothing kept).
            `StoreAuthError`, `StoreNotFoundError`, `StoreError`.
        """
        say = progress or (lambda _line: None)
        sha256 = record.hashes["sha256"]
        size = path.stat().st_size
        uploaded, resumed = 0, 0
        if self.blob_size(sha256) == size:
            say(f"{record.display()}: already in {self.config.name}")
        else:
            uploaded, resumed = self._upload(sha256, path, size, say)
        entry = StoreEntry(
            sha256=sha256,
            name=record.display(),
            type=record.type,
            filename=path.name,
            size=size,
            sources=[s.model_dump(mode="json") for s in record.sources],
            pushed_by=socket.gethostname(),
        )
        self._call(
            "write the record",
            "put_object",
            Bucket=self.config.bucket,
            Key=self.record_key(sha256),
            Body=record.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
        # Read-modify-write: two machines pushing at the same moment may drop one entry, which
        # the next push of that model writes again (the blob and record are there regardless).
        manifest = self.manifest()
        manifest.models[split_digest(sha256)[1]] = entry
        self._call(
            "write the manifest",
            "put_object",
            Bucket=self.config.bucket,
            Key=self.manifest_key,
            Body=manifest.model_dump_json(indent=1).encode(),
            ContentType="application/json",
        )
        return PushResult(record.display(), sha256, size, uploaded, resumed)

    def _upload(self, sha256: str, path: Path, size: int, say: PushProgress) -> tuple[int, int]:
        bucket, key = self.config.bucket, self.blob_key(sha256)
        part_size = self.config.part_size_bytes
        count = max(1, -(-size // part_size))
        upload_id, done = self._open_upload(key, sha256)
        resumed, uploaded, parts = 0, 0, []
        with MultiHasher(["sha256"]) as hasher, path.open("rb") as handle:
            for number in range(1, count + 1):
                data = handle.read(part_size)
                hasher.update(data)
                md5 = hashlib.md5(data, usedforsecurity=False)
                etag = f'"{md5.hexdigest()}"'
                if done.get(number) == etag:
                    resumed += 1
                else:
                    answer = self._call(
                        "upload a part",
                        "upload_part",
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ContentMD5=base64.b64encode(md5.digest()).decode(),
                    )
                    etag = answer["ETag"]
                    uploaded += len(data)
                parts.append({"PartNumber": number, "ETag": etag})
                say(f"part {number}/{count} {'kept' if done.get(number) == etag else 'sent'}")
            actual = hasher.hexdigests()["sha256"]
        if actual != sha256:
            self._call(
                "abort the upload",
                "abort_multipart_upload",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
            )
            raise CorruptModelError(
                f"{path} no longer matches its record (sha256 {actual}, recorded {sha256}); "
                "nothing was pushed. Run verify on it",
                path=str(path),
            )
        self._call(
            "complete the upload",
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        if self.blob_size(sha256) != size:
            raise StoreError(
                f"team store {self.config.name}: {key} does not have the size we sent ({size})"
            )
        return uploaded, resumed

    def _open_upload(self, key: str, sha256: str) -> tuple[str, dict[int, str]]:
        """An unfinished upload of ``key`` to continue (with its parts' ETags), or a new one."""
        bucket = self.config.bucket
        listing = self._call(
            "list unfinished uploads", "list_multipart_uploads", Bucket=bucket, Prefix=key
        )
        for upload in listing.get("Uploads", []):
            if upload.get("Key") != key:
                continue
            upload_id = upload["UploadId"]
            parts = self._call(
                "list uploaded parts", "list_parts", Bucket=bucket, Key=key, UploadId=upload_id
            )
            done = {int(p["PartNumber"]): p["ETag"] for p in parts.get("Parts", [])}
            log.info("team store %s: resuming the upload of %s", self.config.name, key)
            return upload_id, done
        created = self._call(
            "start an upload",
            "create_multipart_upload",
            Bucket=bucket,
            Key=key,
            Metadata={"sha256": split_digest(sha256)[1]},
            ContentType="application/octet-stream",
        )
        return created["UploadId"], {}

    def create_bucket(self) -> None:
        """Create the bucket (for tests and first-time setups on a server of one's own)."""
        self._call("create the bucket", "create_bucket", Bucket=self.config.bucket)


__all__ = ["PushResult", "StoreEntry", "StoreManifest", "TeamStore"]
