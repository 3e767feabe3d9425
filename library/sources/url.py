"""Plain URLs: the bytes are at the URL itself; the file name comes from the response.

Only HTTPS, except to this machine (tests, a local mirror) or when the user allows insecure HTTP;
a redirect to plain HTTP elsewhere is refused the same way (checked by the engine on the final
URL).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from ..downloads.http import check_secure, display_url, split_secret_query
from ..errors import InvalidSourceError
from ..records import SourceRef
from ..settings import DownloadSettings
from . import RemoteFile, safe_filename


@dataclass(frozen=True)
class URLSource:
    url: str

    kind = "url"

    @property
    def key(self) -> str:
        return f"url:{self.url}"

    async def locate(self) -> RemoteFile:
        """Nothing to ask: the URL is the location. The name may be improved from the response."""
        name = unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])
        return RemoteFile(
            url=self.url,
            filename=safe_filename(name),
            source_ref=SourceRef(kind="url", url=self.url),
        )


def parse(text: str, settings: DownloadSettings) -> URLSource:
    """Validate and normalise an http(s) URL (scheme and host lower-cased, fragment dropped).

    Raises:
        `InsecureURLError`: plain HTTP off this machine, not allowed.
        `InvalidSourceError`: no host.
    """
    # A ``user:password@`` or a ``?token=`` is not part of the file's identity and never kept
    # in a source (its key, its `SourceRef`): the queue takes them out first and stores them
    # apart (issue #15); they are dropped here too, for any other caller (a lookup by key).
    parts = urlsplit(split_secret_query(text)[0])
    if not parts.hostname:
        raise InvalidSourceError(f"no host in URL {display_url(text)!r}")
    # Lower-casing the userinfo would have changed the password.
    host = parts.netloc.rpartition("@")[2].lower()
    normal = urlunsplit((parts.scheme.lower(), host, parts.path or "/", parts.query, ""))
    check_secure(normal, settings.allow_insecure_http)
    return URLSource(normal)
