"""Real safetensors files of any size, for tests and benchmarks: one U8 tensor filling the file.

One module, so every test and bench writes model files the same way.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

_HEADER_BYTES = 248  # with the 8-byte length prefix the data starts at 256, 8-aligned


def _header(size: int) -> tuple[bytes, int]:
    """The 8-byte length, the padded JSON header, and how many data bytes follow."""
    data_len = size - 8 - _HEADER_BYTES
    header = {"blob": {"dtype": "U8", "shape": [data_len], "data_offsets": [0, data_len]}}
    raw = json.dumps(header).encode().ljust(_HEADER_BYTES, b" ")  # padding the format allows
    return struct.pack("<Q", len(raw)) + raw, data_len


def write_sparse_safetensors(path: Path, size: int) -> Path:
    """A valid file of exactly ``size`` bytes, made sparse: instant, reads as zeros."""
    head, _ = _header(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


def write_model_file(path: Path, size: int, seed: int = 0) -> Path:
    """A valid file of exactly ``size`` bytes whose content depends on ``seed``.

    Random content so that a splice of two versions, or a byte out of place, changes the digest;
    made fast by repeating one random block, each copy stamped with its index.
    """
    head, data_len = _header(size)
    block_size = min(16 * 1024 * 1024, max(data_len, 8))
    block = bytearray(random.Random(seed).randbytes(block_size))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(head)
        written, index = 0, 0
        while written < data_len:
            block[:8] = struct.pack("<Q", index)
            part = memoryview(block)[: min(block_size, data_len - written)]
            handle.write(part)
            written += len(part)
            index += 1
    return path
