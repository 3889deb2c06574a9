"""The pages the engine serves: `/` (the dashboard), `/office` (the pixel office) and their assets.

Plain files under engine/resources/web (no build step, no CDN), read once when the app is built and
served from memory: only files of that folder, by name, with their content type. The pages talk to the
engine through `/ws` and the API, with the same token (the `/login` cookie) as any client.
"""
from __future__ import annotations

from aiohttp import web

from engine.resources import resource_path

PAGES = {"/": "dashboard.html", "/office": "office.html"}
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
         ".png": "image/png"}


# No other site may frame the pages (a framed dashboard could be clicked into a rollback: the POST would carry
# the engine's own Origin), and assets are read as the type they are served with.
HEADERS = {"Cache-Control": "no-cache", "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff"}


def add_pages(app: web.Application) -> None:
    """Routes for the pages and `/web/{name}` (the assets they load)."""
    folder = resource_path("web")
    files = {path.name: (path.read_bytes(), TYPES[path.suffix]) for path in sorted(folder.glob("*"))
             if path.is_file() and path.suffix in TYPES} if folder.is_dir() else {}

    async def serve(request: web.Request) -> web.Response:
        name = PAGES.get(request.path) or request.match_info.get("name", "")
        found = files.get(name)
        if found is None:
            raise web.HTTPNotFound(reason=f"no page {request.path}")
        return web.Response(body=found[0], content_type=found[1], headers=HEADERS)

    for route in PAGES:
        app.router.add_get(route, serve)
    app.router.add_get("/web/{name}", serve)
