"""Where downloads come from: Hugging Face, Civitai, or a plain URL.

`resolve_source` turns what a person pasted into a `ResolvedSource` without touching the network
(so a bad paste fails at once, and a task can be queued while offline). Its ``key`` names the file
canonically, so the same model asked for twice, by two processes or two spellings of one link,
is one task. ``locate`` then asks the source, over the network, where the bytes are and what they
should hash to, as a `RemoteFile`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

from ..errors import InvalidSourceError, UnsafeNameError
from ..layout import safe_name
from ..records import SourceRef
from ..settings import DownloadSettings


@dataclass(frozen=True)
class RemoteFile:
    """Where one file's bytes are, and what the source says about them."""

    url: str
    source_ref: SourceRef
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    """Credentials for ``url`` only; never sent to another origin, never logged."""
    size: int | None = None
    """Exact size in bytes, when the source states it (checked against what arrives)."""
    size_hint: int | None = None
    """Approximate size (Civitai states kilobytes), for the free-space check only."""
    sha256: str | None = None
    """``"sha256:<hex>"`` when the source publishes it."""
    filename: str | None = None
    version: str | None = None
    """The source's id for this content; a different value later means the file changed."""
    model_type: str | None = None
    """The library type the source says this is (Civitai's model type), if any."""
    expires: bool = False
    """``url`` is short-lived (signed): when it is refused, `ResolvedSource.locate` again."""


class ResolvedSource(Protocol):
    """A parsed, validated source. ``locate`` is the only part that uses the network."""

    kind: str
    """``"huggingface"``, ``"civitai"`` or ``"url"`` (as in `SourceRef.kind`), or ``"sha256"``
    (content only: no `SourceRef`)."""
    key: str
    """Canonical identity: equal keys mean the same file."""

    async def locate(self) -> RemoteFile:
        """Ask the source where the bytes are.

        Raises:
            `OfflineError`, `RemoteError`, `AuthRequiredError`, `InvalidSourceError`.
        """
        ...


def safe_filename(name: str | None) -> str | None:
    """A server-suggested name reduced to a safe single file name, or None if nothing is left.

    Folders in the name are dropped (a server must not choose where in the library a file goes).
    """
    if not name:
        return None
    base = PurePosixPath(name.replace("\\", "/")).name
    try:
        return safe_name(base)
    except UnsafeNameError:
        return None


_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def resolve_source(text: str, settings: DownloadSettings) -> ResolvedSource:
    """Recognise a download source, offline.

    Accepted forms:

    * Hugging Face: ``https://huggingface.co/<repo>/blob/<rev>/<path>`` (or ``/resolve/``),
      ``hf://<repo>/<path>@<rev>``, ``hf://<repo>@<rev>/<path>``, ``<org>/<repo>/<path>``.
    * Civitai: ``https://civitai.com/models/<id>[?modelVersionId=<v>]``,
      ``https://civitai.com/api/download/models/<v>``, ``civitai:<version id>``,
      ``urn:air:<ecosystem>:<type>:civitai:<model>@<version>``.
    * Any other ``https://`` URL (``http://`` only to this machine, or when allowed).
    * ``sha256:<hex>``: a file only the team's stores and LAN peers can send (`content`).

    Args:
        text (`str`): what the user pasted.
        settings (`DownloadSettings`): endpoints and the insecure-HTTP switch.

    Returns:
        `ResolvedSource`: ready to ``locate``.

    Raises:
        `InvalidSourceError`: not a form listed above.
        `InsecureURLError`: plain HTTP off this machine, not allowed.
    """
    from . import civitai, content, huggingface, url

    text = text.strip()
    if not text:
        raise InvalidSourceError("empty download source")
    if content.recognises(text):
        return content.parse(text)
    if _URL_SCHEME.match(text):
        try:
            _ = urlsplit(text).port  # an unclosed IPv6 bracket, a port out of range
        except ValueError as exc:  # the text may hold a password: not quoted
            raise InvalidSourceError(f"not a valid URL: {exc}") from None
    if huggingface.recognises(text, settings):
        return huggingface.parse(text, settings)
    if civitai.recognises(text, settings):
        return civitai.parse(text, settings)
    if _URL_SCHEME.match(text):
        scheme = urlsplit(text).scheme.lower()
        if scheme in ("http", "https"):
            return url.parse(text, settings)
        raise InvalidSourceError(f"unsupported URL scheme {scheme!r} in {text!r}")
    if huggingface.looks_like_repo_path(text):
        return huggingface.parse(text, settings)
    raise InvalidSourceError(
        f"not a download source: {text!r}. Use an https:// URL, a Hugging Face path "
        "(org/repo/file.safetensors, hf://org/repo/file.safetensors@rev), a Civitai link, "
        "civitai:<version id>, an AIR (urn:air:...:civitai:<model>@<version>), or "
        "sha256:<hex> (from the team's stores and peers)"
    )


__all__ = ["RemoteFile", "ResolvedSource", "resolve_source", "safe_filename"]
