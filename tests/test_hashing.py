import hashlib
import io
import threading

import blake3
import pytest
import xxhash

from model_shelf.library.hashing import (
    HashCancelled,
    MultiHasher,
    hash_file,
    hash_stream,
    manifest_hashes,
    split_digest,
)
from model_shelf.library.settings import HASH_CHUNK_BYTES


def reference(data: bytes) -> dict[str, str]:
    return {
        "xxh3_128": "xxh3_128:" + xxhash.xxh3_128(data).hexdigest(),
        "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
        "blake3": "blake3:" + blake3.blake3(data).hexdigest(),
    }


@pytest.mark.parametrize(
    "size", [0, 1, HASH_CHUNK_BYTES - 1, HASH_CHUNK_BYTES, 5 * HASH_CHUNK_BYTES + 17]
)
def test_one_read_gives_every_digest(tmp_path, size):
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    reads = []

    result = hash_file(path, progress=reads.append)

    assert result.hashes == reference(data)
    assert result.size == size
    assert sum(reads) == size  # every byte read exactly once


def test_stream_copies_while_hashing():
    data = bytes(range(256)) * 70_000  # several chunks, the ring buffers wrap around
    sink = io.BytesIO()
    result = hash_stream(io.BytesIO(data), sink=sink)
    assert sink.getvalue() == data
    assert result.hashes == reference(data)


def test_multihasher_accepts_chunks_in_pieces():
    parts = [bytes([i]) * (i * 1000 + 1) for i in range(50)]
    with MultiHasher() as hasher:
        for part in parts:
            hasher.update(part)
        assert hasher.hexdigests() == reference(b"".join(parts))


def test_subset_of_algorithms(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1000)
    assert hash_file(path, algorithms=["xxh3_128"]).hashes == {
        "xxh3_128": reference(b"abc" * 1000)["xxh3_128"]
    }


def test_cancel_stops_hashing(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * HASH_CHUNK_BYTES * 3)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(HashCancelled):
        hash_file(path, cancel=cancel)


def test_manifest_depends_on_names_and_content_not_order():
    a = {"sha256": "sha256:aa"}
    b = {"sha256": "sha256:bb"}
    assert manifest_hashes([("x", a), ("y", b)]) == manifest_hashes([("y", b), ("x", a)])
    assert manifest_hashes([("x", a), ("y", b)]) != manifest_hashes([("x", b), ("y", a)])
    assert manifest_hashes([("x", a)]) != manifest_hashes([("z", a)])


def test_split_digest():
    assert split_digest("SHA256:ABCD") == ("sha256", "abcd")
    assert split_digest("abcd") == ("sha256", "abcd")
