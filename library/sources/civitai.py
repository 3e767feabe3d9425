"""Civitai files: model pages, model-version ids and AIR URNs, located through Civitai's API.

The API (``GET /api/v1/model-versions/{id}``, ``GET /api/v1/models/{id}``) gives each file's
real name, its SHA256, an approximate size and the model type; the file itself comes from its
``downloadUrl``, which redirects to a short-lived signed URL. The API base is a setting
(`DownloadSettings.civitai_api_base`) so that tests and mirrors can stand in for civitai.com.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..downloads.http import USER_AGENT, error_for_exception, raise_for_response
from ..errors import InvalidSourceError, RemoteError
from ..records import SourceRef
from ..settings import DownloadSettings
from . import RemoteFile, safe_filename

if TYPE_CHECKING:
    import aiohttp

_HOSTS = frozenset({"civitai.com", "www.civitai.com", "civitai.green", "civitai.red"})
# urn:air:{ecosystem}:{type}:{source}:{id}[@{version}][+{fileId}][.{format}]; urn: and air: optional
_AIR = re.compile(
    r"^(?:urn:)?(?:air:)?(?:(?P<ecosystem>[\w.-]+):)?(?:(?P<type>[\w.-]+):)?civitai:"
    r"(?P<model>\d+)(?:@(?P<version>\d+))?(?:\+(?P<file>\d+))?(?:\.(?P<format>\w+))?$",
    re.IGNORECASE,
)
_VERSION_ID = re.compile(r"^civitai:(?P<version>\d+)$", re.IGNORECASE)

# Civitai's ModelType -> our type folder. Types with no ComfyUI folder map to None (ask --type).
CIVITAI_TYPES: dict[str, str] = {
    "checkpoint": "checkpoints",
    "lora": "loras",
    "locon": "loras",
    "dora": "loras",
    "textualinversion": "embeddings",
    "vae": "vae",
    "controlnet": "controlnet",
    "upscaler": "upscale_models",
    "hypernetwork": "hypernetworks",
}


def recognises(text: str, settings: DownloadSettings) -> bool:
    """True for Civitai web/API URLs, ``civitai:<id>`` and AIRs naming Civitai."""
    if _AIR.match(text) or _VERSION_ID.match(text):
        return True
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and (parts.hostname or "").lower() in _HOSTS


@dataclass(frozen=True)
class CivitaiSource:
    """A model version (or a model's latest version), optionally one file of it."""

    model_id: int | None
    version_id: int | None
    file_id: int | None
    settings: DownloadSettings

    kind = "civitai"

    @property
    def key(self) -> str:
        if self.version_id is not None:
            suffix = f"+{self.file_id}" if self.file_id is not None else ""
            return f"civitai:version:{self.version_id}{suffix}"
        return f"civitai:model:{self.model_id}"

    def _headers(self) -> dict[str, str]:
        key = self.settings.civitai_api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}

    async def _get_json(self, session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
        import aiohttp  # imported by `locate` already; here for its error class

        url = f"{self.settings.civitai_api_base.rstrip('/')}/{path}"
        try:
            async with session.get(url, headers=self._headers()) as response:
                await raise_for_response(response)
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise error_for_exception(exc, url) from exc
        except ValueError as exc:
            raise RemoteError(
                f"Civitai answered {path} with something that is not JSON", url=url, retryable=True
            ) from exc
        if not isinstance(data, dict):
            raise RemoteError(f"unexpected Civitai answer for {path}", url=url, retryable=False)
        return data

    async def locate(self) -> RemoteFile:
        """Ask Civitai's API for the version's files and pick one.

        See `_locate` for what it returns and raises.
        """
        # Imported here, not at the top: aiohttp takes 0.2 s to import, which every command of
        # the CLI would pay, and only Civitai's API is asked through it.
        import aiohttp

        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.connect_timeout_seconds,
            sock_read=self.settings.stall_timeout_seconds,
        )
        headers = {"User-Agent": USER_AGENT}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            return await self._locate(session)

    async def _locate(self, session: aiohttp.ClientSession) -> RemoteFile:
        """Ask Civitai's API for the version's files and pick one.

        Returns:
            `RemoteFile`: the download URL (with the API key for Civitai's own host), the real
            file name, SHA256, approximate size and model type.

        Raises:
            `RemoteError`: no such model/version/file, or the API failed.
            `AuthRequiredError`: the file needs an API key (CIVITAI_API_KEY).
            `OfflineError`: Civitai cannot be reached.
        """
        if self.version_id is not None:
            version = await self._get_json(session, f"model-versions/{self.version_id}")
            model_type = (version.get("model") or {}).get("type")
        else:
            model = await self._get_json(session, f"models/{self.model_id}")
            versions = model.get("modelVersions") or []
            if not versions:
                raise RemoteError(
                    f"Civitai model {self.model_id} has no published version", retryable=False
                )
            version = versions[0]  # the API lists the newest first
            model_type = model.get("type")
        chosen = self._pick_file(version)
        url = str(chosen.get("downloadUrl") or version.get("downloadUrl") or "")
        if not url:
            raise RemoteError("Civitai gave no download URL for this file", retryable=False)
        api_origin = urlsplit(self.settings.civitai_api_base).netloc.lower()
        headers = self._headers() if urlsplit(url).netloc.lower() == api_origin else {}
        sha = ((chosen.get("hashes") or {}).get("SHA256") or "").lower()
        size_kb = chosen.get("sizeKB")
        model_id = version.get("modelId") or self.model_id
        version_id = version.get("id") or self.version_id
        return RemoteFile(
            url=url,
            headers=headers,
            size_hint=int(float(size_kb) * 1024) if size_kb else None,
            sha256=f"sha256:{sha}" if re.fullmatch(r"[0-9a-f]{64}", sha) else None,
            filename=safe_filename(chosen.get("name")),
            version=sha or str(chosen.get("id") or version_id),
            model_type=CIVITAI_TYPES.get(str(model_type or "").lower()),
            source_ref=SourceRef(
                kind="civitai",
                url=f"https://civitai.com/models/{model_id}?modelVersionId={version_id}",
                model_id=int(model_id) if model_id else None,
                version_id=int(version_id) if version_id else None,
            ),
            expires=True,
        )

    def _pick_file(self, version: dict[str, Any]) -> dict[str, Any]:
        files = [f for f in version.get("files") or [] if isinstance(f, dict)]
        if self.file_id is not None:
            for entry in files:
                if entry.get("id") == self.file_id:
                    return entry
            raise RemoteError(
                f"Civitai version {version.get('id')} has no file {self.file_id}", retryable=False
            )
        for entry in files:
            if entry.get("primary"):
                return entry
        for entry in files:
            if entry.get("type") == "Model":
                return entry
        if files:
            return files[0]
        raise RemoteError(f"Civitai version {version.get('id')} lists no files", retryable=False)


def parse(text: str, settings: DownloadSettings) -> CivitaiSource:
    """Parse a Civitai form (see `resolve_source`).

    Raises:
        `InvalidSourceError`: a Civitai page that names no model, or a malformed id.
    """
    match = _VERSION_ID.match(text)
    if match:
        return CivitaiSource(None, int(match["version"]), None, settings)
    match = _AIR.match(text)
    if match:
        version = int(match["version"]) if match["version"] else None
        file_id = int(match["file"]) if match["file"] else None
        return CivitaiSource(int(match["model"]), version, file_id, settings)
    parts = urlsplit(text)
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    if segments[:3] == ["api", "download", "models"] and segments[3:4] and segments[3].isdigit():
        return CivitaiSource(None, int(segments[3]), None, settings)
    if len(segments) >= 2 and segments[0] == "models" and segments[1].isdigit():
        version_text = (query.get("modelVersionId") or [""])[0]
        version = int(version_text) if version_text.isdigit() else None
        return CivitaiSource(int(segments[1]), version, None, settings)
    raise InvalidSourceError(
        f"{text!r} does not name a Civitai model; paste a model page "
        "(https://civitai.com/models/<id>?modelVersionId=<version>) or civitai:<version id>"
    )
