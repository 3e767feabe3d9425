"""``/model-shelf/team``: team stores and LAN peers (issue #13).

For the page and the CLI's owner: the configuration (keys masked), a store's models, push,
and everything the stores and peers hold. For peers on the LAN (`guard.serves_peers`: token and
local-network checks instead of the browser-facing ones): what this library shares, and the
bytes of one shared file by sha256, with Range (aiohttp's `FileResponse`, reading off the loop).
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from ..library.installer import normalize_sha256
from .context import RouteContext
from .guard import read_json, serves_peers
from .paths import PREFIX
from .responses import json_data
from .schemas import TeamPush


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The team routes, bound to ``ctx``."""

    async def check_peer(request: web.Request) -> None:
        await ctx.run(
            ctx.shelf().team.check_peer, request.remote, request.headers.get("Authorization")
        )

    @serves_peers
    async def blob(request: web.Request) -> web.StreamResponse:
        """The bytes of a shared model, by sha256 (Range, If-Range and HEAD by aiohttp)."""
        await check_peer(request)
        sha256 = normalize_sha256(request.match_info["sha256"])
        path, entry = await ctx.run(ctx.shelf().team.shared_file, sha256)
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Model-Shelf-Sha256": entry.sha256,
                "Cache-Control": "no-store",
            },
        )

    @serves_peers
    async def peer_models(request: web.Request) -> web.Response:
        await check_peer(request)
        entries = await ctx.run(ctx.shelf().team.shared_models)
        return json_data([e.model_dump(mode="json") for e in entries])

    @serves_peers
    async def peer_model(request: web.Request) -> web.Response:
        await check_peer(request)
        sha256 = normalize_sha256(request.match_info["sha256"])
        _, entry = await ctx.run(ctx.shelf().team.shared_file, sha256)
        return json_data(entry.model_dump(mode="json"))

    async def config(request: web.Request) -> web.Response:
        team = ctx.shelf().team

        def read() -> dict[str, object]:
            current = team.config()
            return {
                "stores": [asdict(s) for s in team.stores()],
                "peers": team.peer_urls(),
                "bad_peers": team.directory.bad(),
                "discovery": current.discovery,
                "share_all": current.share_all,
                "shared": len(current.shared),
                "token": team.masked_token(),
            }

        return json_data(await ctx.run(read))

    async def store_models(request: web.Request) -> web.Response:
        entries = await ctx.run(
            ctx.shelf().team.store_models, request.match_info["name"], request.query.get("q")
        )
        return json_data([e.model_dump(mode="json") for e in entries])

    async def push(request: web.Request) -> web.Response:
        body = await read_json(request, TeamPush)
        results = await ctx.run_long(ctx.shelf().team.push, body.names, body.store)
        return json_data([asdict(r) for r in results])

    async def remote(request: web.Request) -> web.Response:
        found = await ctx.run_long(ctx.shelf().remote_models)
        return json_data(
            [{"where": m.where, "label": m.label, **m.entry.model_dump(mode="json")} for m in found]
        )

    return [
        web.get(f"{PREFIX}/blobs/{{sha256}}", blob),
        web.get(f"{PREFIX}/peer/models", peer_models),
        web.get(f"{PREFIX}/peer/models/{{sha256}}", peer_model),
        web.get(f"{PREFIX}/team", config),
        web.get(f"{PREFIX}/team/stores/{{name}}/models", store_models),
        web.post(f"{PREFIX}/team/push", push),
        web.get(f"{PREFIX}/team/remote", remote),
    ]
