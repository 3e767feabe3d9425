"""Preview images: the first safe image a source lists, saved beside the model as
``<stem>.preview.<ext>``, and a small thumbnail under ``.shelf/thumbnails/``.

The image URL comes from a remote server, so nothing of it reaches a path: the file name comes
from the record, the extension from the bytes themselves (PNG, JPEG or WebP, else refused), the
size is capped, and the target must lie inside the library root (no symlinked folder out of it).
Both files are written atomically. A preview a person put there is never replaced.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from ..errors import RemoteError, UnsafeNameError
from ..fsutil import atomic_write_bytes
from ..layout import Layout
from ..metadata import ImageRef, Match, Preview
from ..records import ModelKind, ModelRecord
from ..settings import EnrichSettings
from .client import PoliteClient

PREVIEW_SUFFIXES = (
    ".preview.png",
    ".preview.jpg",
    ".preview.jpeg",
    ".preview.webp",
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
)
"""Images beside a model that are its previews (the conventions of ComfyUI model managers)."""

THUMBNAILS_DIRNAME = "thumbnails"
MAX_IMAGE_PIXELS = 64_000_000
"""Larger images are refused before decoding (a decompression bomb)."""


def sniff(data: bytes) -> str | None:
    """The image format of ``data`` from its first bytes: ``png``, ``jpg``, ``webp`` or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def choose_image(match: Match, nsfw_max_level: int) -> ImageRef | None:
    """The first still image at or below ``nsfw_max_level``; an unrated one counts as unsafe."""
    for image in match.images:
        if image.type != "image" or not image.url.startswith(("https://", "http://")):
            continue
        if 1 <= image.nsfw_level <= max(nsfw_max_level, 0):
            return image
    return None


def model_stem(layout: Layout, record: ModelRecord) -> Path:
    model = layout.model_path(record.type, record.name)
    return model.with_suffix("") if record.kind is ModelKind.FILE else model


def existing_previews(layout: Layout, record: ModelRecord) -> list[Path]:
    """Preview images beside the model, in `PREVIEW_SUFFIXES` order."""
    stem = model_stem(layout, record)
    return [
        candidate
        for suffix in PREVIEW_SUFFIXES
        if (candidate := stem.with_name(stem.name + suffix)).is_file()
    ]


def thumbnail_path(layout: Layout, record: ModelRecord) -> Path:
    return layout.state_dir / THUMBNAILS_DIRNAME / f"{record.id}.webp"


def confined(layout: Layout, path: Path) -> Path:
    """``path`` if it lies inside the root once every symlink is followed.

    Raises:
        `UnsafeNameError`: it would land outside the library root.
    """
    root = layout.root.resolve()
    real = path.parent.resolve() / path.name
    if path.is_symlink() or not real.is_relative_to(root):
        raise UnsafeNameError(f"refusing to write {path}: outside the library root {root}")
    return real


def make_thumbnail(data: bytes, pixels: int) -> bytes:
    """A WebP no larger than ``pixels`` on its longer side.

    Raises:
        `RemoteError`: the bytes are not an image Pillow can decode (or too large).
    """
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((pixels, pixels))
            out = io.BytesIO()
            image.convert("RGB").save(out, format="WEBP", quality=80)
            return out.getvalue()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise RemoteError(f"the preview is not a usable image: {exc}", retryable=False) from exc


async def fetch_preview(
    client: PoliteClient,
    layout: Layout,
    record: ModelRecord,
    match: Match,
    settings: EnrichSettings,
) -> Preview | None:
    """Download ``match``'s first safe image as the model's preview, with its thumbnail.

    Returns None when there is no safe image, or when a preview of the user's own is there.

    Raises:
        `RemoteError`: the body is not a PNG/JPEG/WebP image, or too large; as `PoliteClient`.
        `UnsafeNameError`: the model's folder leads outside the root.
    """
    image = choose_image(match, settings.nsfw_max_level)
    if image is None:
        return None
    ours = record.metadata.preview
    present = existing_previews(layout, record)
    mine = ours is not None and (layout.root / ours.file) in present
    if present and not mine:
        return None  # the user's own preview stays
    if mine and ours is not None and ours.url == image.url:
        return ours
    content_type, data = await client.get_bytes(image.url, settings.preview_max_bytes)
    kind = sniff(data)
    if kind is None or not content_type.startswith("image/"):
        raise RemoteError(
            f"the preview of {record.display()} is not a PNG, JPEG or WebP image", retryable=False
        )
    thumb = await asyncio.to_thread(make_thumbnail, data, settings.thumbnail_pixels)
    stem = model_stem(layout, record)
    target = confined(layout, stem.with_name(f"{stem.name}.preview.{kind}"))
    thumb_target = confined(layout, thumbnail_path(layout, record))

    def write() -> None:
        atomic_write_bytes(target, data)
        thumb_target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(thumb_target, thumb)

    await asyncio.to_thread(write)
    root = layout.root.resolve()
    return Preview(
        file=target.relative_to(root).as_posix(),
        thumbnail=thumb_target.relative_to(root).as_posix(),
        url=image.url,
        nsfw_level=image.nsfw_level,
    )
