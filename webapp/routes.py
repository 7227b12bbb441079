"""The Mini App's aiohttp sub-application: pages, scripts and libsodium, read once at start.

Everything served is read from disk when the application is built and kept in memory, with
the team public key and its fingerprint written into the pages then: a page is the same for
every request, so the server cannot hand one member a page with a different key, and an
organisation can check the hash of what it serves (see the README, "End to end").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from crypto.boxes import key_id
from crypto.devices import fingerprint

WEBAPP_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEBAPP_DIR / "static"
NODE_MODULES = WEBAPP_DIR / "node_modules"
_WRAPPERS = NODE_MODULES / "libsodium-wrappers" / "dist" / "modules-esm" / "libsodium-wrappers.mjs"
_SODIUM = NODE_MODULES / "libsodium" / "dist" / "modules-esm" / "libsodium.mjs"
# libsodium-wrappers imports its core by package name, which a browser cannot resolve without
# an import map (an inline script, which the CSP forbids): the one import is pointed at the
# file served beside it, once, at start.
_BARE_IMPORT = b'from"libsodium"'
_LOCAL_IMPORT = b'from"./libsodium.mjs"'

# No inline script or style, nothing from anywhere but here and Telegram's own script; only
# Telegram's clients may frame the page. 'wasm-unsafe-eval' lets libsodium compile its
# WebAssembly (it allows no JavaScript eval). No form posts, no <base> games, no plugins.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval' https://telegram.org",
        "connect-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "object-src 'none'",
        "frame-ancestors https://web.telegram.org https://*.telegram.org",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_TYPES = {
    ".html": "text/html",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


ASSETS: web.AppKey[dict[str, Asset]] = web.AppKey("assets")


class WebappNotBuilt(RuntimeError):
    """``webapp/node_modules`` is missing: run ``npm ci`` in ``webapp/``."""


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def vendor_assets() -> dict[str, Asset]:
    """libsodium's ESM build from ``node_modules`` (installed by ``npm ci`` from the lockfile)."""
    if not _WRAPPERS.is_file() or not _SODIUM.is_file():
        raise WebappNotBuilt("webapp/node_modules is missing: run `npm ci` in webapp/")
    wrappers = _WRAPPERS.read_bytes()
    if wrappers.count(_BARE_IMPORT) != 1:
        raise WebappNotBuilt("libsodium-wrappers changed its import: check webapp/routes.py")
    return {
        "vendor/libsodium-wrappers.mjs": Asset(
            wrappers.replace(_BARE_IMPORT, _LOCAL_IMPORT), "text/javascript"
        ),
        "vendor/libsodium.mjs": Asset(_SODIUM.read_bytes(), "text/javascript"),
    }


def static_assets(team_public_key: bytes) -> dict[str, Asset]:
    """Every file under ``static/``, pages with the team key pinned in, plus libsodium."""
    pins = {
        b"{{TEAM_PUBLIC_KEY}}": team_public_key.hex().encode("ascii"),
        b"{{TEAM_KEY_ID}}": key_id(team_public_key).hex().encode("ascii"),
        b"{{TEAM_FINGERPRINT}}": fingerprint(team_public_key).encode("ascii"),
    }
    assets: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if not path.is_file() or path.suffix not in _TYPES:
            continue
        body = path.read_bytes()
        if path.suffix == ".html":
            for marker, value in pins.items():
                body = body.replace(marker, value)
        assets[path.relative_to(STATIC_DIR).as_posix()] = Asset(body, _TYPES[path.suffix])
    assets.update(vendor_assets())
    return assets


def build_webapp(team_public_key: bytes) -> web.Application:
    """The sub-application to mount on the bot's web server (``app.add_subapp(prefix, ...)``)."""
    assets = static_assets(team_public_key)

    async def serve(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["path"])
        if asset is None:
            raise web.HTTPNotFound(headers=SECURITY_HEADERS)
        return web.Response(
            body=asset.body, content_type=asset.content_type, headers=SECURITY_HEADERS
        )

    app = web.Application(client_max_size=16 * 1024)
    app[ASSETS] = assets
    app.router.add_get("/{path:.+}", serve)
    return app
