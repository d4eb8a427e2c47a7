"""The web console's files: read from inside the package once, served at `/` and `/console/`.

The console is static files (`console/index.html`, `style.css`, and ES modules:
`app.js` routes, `util.js`, one module per view):
plain ES modules and CSS, no framework, CDN, web font or build step, so it
works on a machine with no internet access and installs with the wheel. The
page reads the same `/api/` as scripts do; the files themselves hold no data,
so they are served to anyone who can reach the listener.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

INDEX = "index.html"
ASSETS = {
    "app.js": "text/javascript",
    "util.js": "text/javascript",
    "overview.js": "text/javascript",
    "approvals.js": "text/javascript",
    "results.js": "text/javascript",
    "run.js": "text/javascript",
    "audit.js": "text/javascript",
    "style.css": "text/css",
}
_NO_CACHE = {"Cache-Control": "no-cache"}  # a new version shows on the next load


def mount_console(app: web.Application) -> None:
    """`GET /` (the page) and `GET /console/<asset>`; the files are read once, here."""
    folder = resources.files("remediator.http") / "console"
    index = (folder / INDEX).read_bytes()
    assets = {name: (folder / name).read_bytes() for name in ASSETS}

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=index, content_type="text/html", headers=_NO_CACHE)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound(text=f"no console file {name}\n")
        return web.Response(body=assets[name], content_type=ASSETS[name], headers=_NO_CACHE)

    app.router.add_get("/", page)
    app.router.add_get("/console/{name}", asset)
