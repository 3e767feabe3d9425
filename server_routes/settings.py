"""``/model-shelf/settings``: library root, download limits, Hugging Face token and Civitai key.

Credentials are written to ``<root>/.shelf/secrets.json`` (mode 0600) and only ever leave the
server masked (``hf_…abcd``). Nothing here logs a request body.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import SecretStr

from ..library import Shelf
from ..library.stored_settings import StoredLimits, mask
from .context import RootSetting, RouteContext
from .guard import AllowedHosts, read_json
from .paths import PREFIX
from .responses import json_model
from .schemas import SecretView, SettingsUpdate, SettingsView

_LIMITS = (
    "concurrency",
    "bandwidth_limit_bytes_per_second",
    "allowed_fetch_hosts",
    "allowed_hosts",
)
_SECRETS = ("hf_token", "civitai_api_key")


def settings_view(
    shelf: Shelf, root_setting: RootSetting, hosts: AllowedHosts | None = None
) -> SettingsView:
    """The settings as the page may see them (reads the stored files: call off the loop).

    Raises:
        `SettingsError`: a stored settings file is not valid.
    """
    current = shelf.downloads.settings
    stored = shelf.stored_settings.secrets()
    base = shelf.base_download_settings

    def secret(name: str) -> SecretView:
        value: SecretStr | None = getattr(current, name)
        if getattr(stored, name) is not None:
            source = "stored"
        elif getattr(base, name) is not None:
            source = "environment"
        else:
            source = "none"
        return SecretView(set=value is not None, masked=mask(value), source=source)

    pending = root_setting.pending()
    return SettingsView(
        root=str(shelf.root),
        root_source=root_setting.source,
        root_editable=root_setting.editable,
        pending_root=pending if pending and pending != str(shelf.root) else None,
        concurrency=current.concurrency,
        bandwidth_limit_bytes_per_second=current.bandwidth_limit_bytes_per_second,
        hf_endpoint=current.hf_endpoint,
        hf_token=secret("hf_token"),
        civitai_api_key=secret("civitai_api_key"),
        allowed_fetch_hosts=list(current.allowed_fetch_hosts),
        allowed_hosts=sorted(hosts.names | hosts.stored) if hosts is not None else [],
    )


def apply_update(
    shelf: Shelf, root_setting: RootSetting, update: SettingsUpdate, hosts: AllowedHosts
) -> SettingsView:
    """Store the keys ``update`` gives and use them at once (the root: from the next start)."""
    given = update.model_fields_set
    if "root" in given and update.root is not None:
        root_setting.save(update.root)
    limits = secrets = None
    if given & set(_LIMITS):
        values = shelf.stored_settings.limits().model_dump()
        values.update({k: getattr(update, k) for k in _LIMITS if k in given})
        limits = StoredLimits.model_validate(values)
    if given & set(_SECRETS):
        stored = shelf.stored_settings.secrets()
        changed: dict[str, SecretStr | None] = {}
        for name in _SECRETS:
            if name in given:
                value = getattr(update, name)
                changed[name] = SecretStr(value) if value else None
        secrets = stored.model_copy(update=changed)
    if limits is not None or secrets is not None:
        shelf.update_download_settings(limits, secrets)
    if limits is not None:
        hosts.set_stored(limits.allowed_hosts or ())
    return settings_view(shelf, root_setting, hosts)


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The settings routes, bound to ``ctx``."""

    async def get_settings(request: web.Request) -> web.Response:
        return json_model(await ctx.run(settings_view, ctx.shelf(), ctx.root_setting, ctx.hosts))

    async def put_settings(request: web.Request) -> web.Response:
        """Only the keys given change; ``""``/``null`` removes a credential."""
        update = await read_json(request, SettingsUpdate)
        view = await ctx.run(apply_update, ctx.shelf(), ctx.root_setting, update, ctx.hosts)
        return json_model(view)

    return [
        web.get(f"{PREFIX}/settings", get_settings),
        web.put(f"{PREFIX}/settings", put_settings),
    ]
