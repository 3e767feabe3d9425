"""Numbers for people."""

from __future__ import annotations

from .errors import InvalidSizeError


def human_size(size: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: binary units, one decimal (whole bytes below 1 KiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4,
          "tb": 1000**4, "tib": 1024**4}  # fmt: skip


def parse_size(text: str | int) -> int:
    """``"50GiB"``, ``"1.5 GB"``, ``"2048"`` -> bytes.

    Raises:
        `InvalidSizeError`: not a size.
    """
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    text = str(text)
    value = text.strip().lower().replace(" ", "").replace("_", "")
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    factor = _UNITS.get(value[len(number) :])
    try:
        amount = float(number)
    except ValueError:
        amount = -1.0
    if factor is None or not 0 <= amount < 2**63:
        raise InvalidSizeError(f"{text!r} is not a size (say 50GiB, 1.5TB or a number of bytes)")
    return int(amount * factor)
