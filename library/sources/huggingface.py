"""Hugging Face files: the forms people paste, resolved with ``huggingface_hub`` itself.

URL building (`hf_hub_url`), authentication headers and file metadata (`get_hf_file_metadata`:
size, LFS sha256, commit, and the signed CDN location) come from huggingface_hub, so its rules
(redirects that stay on the Hub, tokens never sent to the CDN) are the ones we follow. The endpoint
is passed explicitly from `DownloadSettings.hf_endpoint`: huggingface_hub reads ``HF_ENDPOINT``
once at import, which would ignore a later setting.

Works with huggingface_hub 0.34 and newer (ComfyUI environments often hold a 0.x release, which
``transformers`` 4.x requires).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from functools import partial
from urllib.parse import quote, unquote, urlsplit

from ..downloads.http import error_for_exception
from ..errors import InvalidSourceError
from ..records import SourceRef
from ..settings import DownloadSettings, stored_hf_token
from . import RemoteFile, safe_filename

_HUB_HOSTS = frozenset({"huggingface.co", "www.huggingface.co", "hf.co"})
_REPO_TYPE_PREFIXES = {"datasets": "dataset", "spaces": "space", "models": "model"}
_FILE_ROUTES = frozenset({"blob", "resolve", "raw"})
_SPECIAL_REF = re.compile(r"^refs/(pr/\d+|convert/[\w.-]+)")
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO_PATH = re.compile(rf"^{_NAME}/{_NAME}/[^\s@]+\.[A-Za-z0-9]+(@[^\s/]+)?$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _endpoint_origin(settings: DownloadSettings) -> tuple[str, str]:
    parts = urlsplit(settings.hf_endpoint)
    return (parts.hostname or "").lower(), parts.netloc.lower()


def recognises(text: str, settings: DownloadSettings) -> bool:
    """True for ``hf://`` and for web URLs on the Hub (or on the configured endpoint)."""
    if text.startswith("hf://"):
        return True
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        return False
    host = (parts.hostname or "").lower()
    return host in _HUB_HOSTS or parts.netloc.lower() == _endpoint_origin(settings)[1]


def looks_like_repo_path(text: str) -> bool:
    """True for a bare ``org/repo/path/file.ext`` (optionally ``@revision``)."""
    return _REPO_PATH.match(text) is not None


@dataclass(frozen=True)
class HuggingFaceSource:
    """One file in one repository at one revision."""

    repo_id: str
    path: str
    revision: str
    repo_type: str
    settings: DownloadSettings

    kind = "huggingface"

    @property
    def key(self) -> str:
        return f"hf:{self.repo_type}:{self.repo_id}@{self.revision}/{self.path}"

    def web_url(self, revision: str | None = None) -> str:
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        rev = quote(revision or self.revision, safe="")
        base = self.settings.hf_endpoint.rstrip("/")
        return f"{base}/{prefix}{self.repo_id}/blob/{rev}/{quote(self.path)}"

    def _token(self) -> str | None:
        if self.settings.hf_token is not None:
            return self.settings.hf_token.get_secret_value()
        return stored_hf_token()

    async def locate(self) -> RemoteFile:
        """HEAD the file on the Hub (through huggingface_hub, in a thread: its client blocks).

        Returns:
            `RemoteFile`: the (signed CDN) location, size, LFS sha256 and commit.

        Raises:
            `AuthRequiredError`: a gated or private repository without a valid token.
            `RemoteError`: the repository, revision or file does not exist; or the Hub failed.
            `OfflineError`: the Hub cannot be reached.
        """
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        endpoint = self.settings.hf_endpoint.rstrip("/")
        url = hf_hub_url(
            self.repo_id,
            self.path,
            repo_type=None if self.repo_type == "model" else self.repo_type,
            revision=self.revision,
            endpoint=endpoint,
        )
        token = await asyncio.to_thread(self._token)
        fetch = partial(
            get_hf_file_metadata,
            url,
            token=token or False,
            timeout=self.settings.connect_timeout_seconds,
            endpoint=endpoint,
        )
        try:
            metadata = await asyncio.to_thread(fetch)
        except (OSError, *_transport_errors()) as exc:
            raise error_for_exception(exc, url) from exc
        location = metadata.location or url
        # The token goes to the Hub only; a CDN location is signed and must not receive it.
        same_origin = urlsplit(location).netloc.lower() == urlsplit(endpoint).netloc.lower()
        headers = {"Authorization": f"Bearer {token}"} if token and same_origin else {}
        etag = (metadata.etag or "").lower()
        sha256 = f"sha256:{etag}" if _SHA256_HEX.match(etag) else None
        return RemoteFile(
            url=location,
            headers=headers,
            size=metadata.size,
            sha256=sha256,
            filename=safe_filename(self.path.rsplit("/", 1)[-1]),
            version=metadata.etag,
            source_ref=SourceRef(
                kind="huggingface",
                url=self.web_url(metadata.commit_hash),
                repo_id=self.repo_id,
                revision=metadata.commit_hash or self.revision,
                path=self.path,
            ),
            expires=location != url,
        )


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The base error of huggingface_hub's HTTP client, where it is not an `OSError`.

    requests (huggingface_hub < 1.0) raises OSErrors already; httpx (1.x) and httpx2 (2.x) do not.
    """
    try:
        import httpx2

        return (httpx2.HTTPError,)
    except ImportError:
        pass
    try:
        import httpx

        return (httpx.HTTPError,)
    except ImportError:
        return ()


def parse(text: str, settings: DownloadSettings) -> HuggingFaceSource:
    """Parse any accepted Hugging Face form (see `resolve_source`).

    Raises:
        `InvalidSourceError`: a repository page or folder rather than one file, or malformed.
    """
    if text.startswith("hf://"):
        return _parse_uri(text, text[len("hf://") :], settings)
    if text.startswith(("http://", "https://")):
        return _parse_web_url(text, settings)
    return _parse_uri(text, text, settings)


def _split_type(segments: list[str]) -> tuple[str, list[str]]:
    if segments and segments[0] in _REPO_TYPE_PREFIXES:
        return _REPO_TYPE_PREFIXES[segments[0]], segments[1:]
    return "model", segments


def _parse_uri(original: str, body: str, settings: DownloadSettings) -> HuggingFaceSource:
    """``[type/]org/repo/path[@rev]`` or ``[type/]org/repo@rev/path``."""
    repo_type, segments = _split_type([s for s in body.split("/") if s])
    if len(segments) < 2:
        raise _not_a_file(original)
    revision = "main"
    if "@" in segments[1]:  # hf://org/repo@rev/path (huggingface_hub's own form)
        name, _, rev_head = segments[1].partition("@")
        rest = "/".join([rev_head, *segments[2:]])
        special = _SPECIAL_REF.match(rest)
        if special:
            revision, path = special.group(0), rest[special.end() :].lstrip("/")
        else:
            revision, _, path = rest.partition("/")
        repo_id = f"{segments[0]}/{name}"
        revision = unquote(revision)
    else:  # hf://org/repo/path@rev (the form in our docs)
        repo_id = f"{segments[0]}/{segments[1]}"
        path = "/".join(segments[2:])
        if "@" in path:
            path, _, revision = path.rpartition("@")
            revision = unquote(revision)
    return _checked(original, repo_id, path, revision, repo_type, settings)


def _parse_web_url(text: str, settings: DownloadSettings) -> HuggingFaceSource:
    parts = urlsplit(text)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    repo_type, segments = _split_type(segments)
    if len(segments) < 4 or segments[2] not in _FILE_ROUTES:
        raise _not_a_file(text)
    repo_id = f"{segments[0]}/{segments[1]}"
    rest = "/".join(segments[3:])
    special = _SPECIAL_REF.match(rest)
    if special:
        revision, path = special.group(0), rest[special.end() :].lstrip("/")
    else:
        revision, _, path = rest.partition("/")
    return _checked(text, repo_id, path, revision, repo_type, settings)


def _checked(
    original: str,
    repo_id: str,
    path: str,
    revision: str,
    repo_type: str,
    settings: DownloadSettings,
) -> HuggingFaceSource:
    if not path or path.endswith("/") or not revision:
        raise _not_a_file(original)
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise InvalidSourceError(f"bad file path {path!r} in {original!r}")
    if not all(re.fullmatch(_NAME, part) for part in repo_id.split("/")):
        raise InvalidSourceError(f"bad repository id {repo_id!r} in {original!r}")
    return HuggingFaceSource(repo_id, path, revision, repo_type, settings)


def _not_a_file(text: str) -> InvalidSourceError:
    return InvalidSourceError(
        f"{text!r} does not name one file in a Hugging Face repository; paste the file's link "
        "(https://huggingface.co/<org>/<repo>/blob/<revision>/<file>) or hf://<org>/<repo>/<file>"
    )
