"""The Mini App's aiohttp sub-application: pages, scripts and libsodium, read once at start.

Everything served is read from disk when the application is built and kept in memory, with
the team public key and its fingerprint written into the pages then: a page is the same for
every request, so the server cannot hand one member a page with a different key, and an
organisation can check the hash of what it serves (see the README, "End to end").
"""

from __future__ import annotations

import gzip
import hashlib
import html
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bot.core import Core
from bot.i18n import LANGUAGES, t
from crypto.boxes import key_id
from crypto.devices import fingerprint
from webapp.api import WebappApi

log = logging.getLogger(__name__)

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
    # Compressed once at start: libsodium is ~430 KB, ~170 KB gzipped, and members' phones
    # are cheap and their data plans small. Static files hold no secret, so compressing
    # them reveals nothing (no BREACH-style guessing).
    gzipped: bytes = b""

    def __post_init__(self) -> None:
        if not self.gzipped:
            object.__setattr__(self, "gzipped", gzip.compress(self.body, mtime=0))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def vendor_assets() -> dict[str, Asset]:
    """libsodium's ESM build from ``node_modules`` (installed by ``npm ci`` from the lockfile)."""
    if not _WRAPPERS.is_file() or not _SODIUM.is_file():
        raise WebappNotBuilt(
            "the Mini App's libsodium is missing from this install (webapp/node_modules): run "
            '`npm ci` in webapp/ before installing (README, "The Mini App in production").'
        )
    wrappers = _WRAPPERS.read_bytes()
    if wrappers.count(_BARE_IMPORT) != 1:
        raise WebappNotBuilt("libsodium-wrappers changed its import: check webapp/routes.py")
    return {
        "vendor/libsodium-wrappers.mjs": Asset(
            wrappers.replace(_BARE_IMPORT, _LOCAL_IMPORT), "text/javascript"
        ),
        "vendor/libsodium.mjs": Asset(_SODIUM.read_bytes(), "text/javascript"),
    }


_TEXT = re.compile(rb"\{\{t:([a-z0-9_]+)\}\}")
# Pages written once per language (``member.ko.html``...): their words come from the bot's
# catalogues, so the page speaks as the chat does.
PAGES = ("member.html", "staff.html")


def _translated(body: bytes, language: str) -> bytes:
    def word(match: re.Match[bytes]) -> bytes:
        return html.escape(t(language, match.group(1).decode("ascii"))).encode("utf-8")

    return _TEXT.sub(word, body).replace(b"{{LANG}}", language.encode("ascii"))


def static_assets(team_public_key: bytes, team_verify_key: bytes | None = None) -> dict[str, Asset]:
    """Every file under ``static/``, pages with the team key and the team's verify key (the
    anchor of device certificates; empty when not known yet, and then the pages seal to the
    team key alone) pinned in (one per language), plus libsodium."""
    pins = {
        b"{{TEAM_VERIFY_KEY}}": (team_verify_key or b"").hex().encode("ascii"),
        b"{{TEAM_PUBLIC_KEY}}": team_public_key.hex().encode("ascii"),
        b"{{TEAM_KEY_ID}}": key_id(team_public_key).hex().encode("ascii"),
        b"{{TEAM_FINGERPRINT}}": fingerprint(team_public_key).encode("ascii"),
    }
    assets: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if not path.is_file() or path.suffix not in _TYPES:
            continue
        body = path.read_bytes()
        name = path.relative_to(STATIC_DIR).as_posix()
        if path.suffix == ".html":
            for marker, value in pins.items():
                body = body.replace(marker, value)
        if name in PAGES:
            stem = name.removesuffix(".html")
            for language in LANGUAGES:
                assets[f"{stem}.{language}.html"] = Asset(_translated(body, language), "text/html")
            continue
        assets[name] = Asset(body, _TYPES[path.suffix])
    assets.update(vendor_assets())
    return assets


def _serve(assets: dict[str, Asset]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["path"])
        if asset is None:
            raise web.HTTPNotFound(headers=SECURITY_HEADERS)
        headers = dict(SECURITY_HEADERS, Vary="Accept-Encoding")
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            body = asset.gzipped
        else:
            body = asset.body
        return web.Response(body=body, content_type=asset.content_type, headers=headers)

    return serve


def webapp_routes(core: Core, wake: Callable[[], None] = lambda: None) -> list[web.RouteDef]:
    """Pages, scripts and the API under ``SAFERELAY_WEBAPP_URL``'s path, for the bot's web
    server (bot/web.py). Raises :class:`WebappNotBuilt` if ``npm ci`` was not run."""
    prefix = core.settings.webapp_prefix
    assets = static_assets(core.secrets.team_sealer.public_key, core.secrets.team_verify_key)
    # What is served, by hash, so the organisation can check it against the repository.
    for name, asset in sorted(assets.items()):
        log.info("Mini App serves %s sha256=%s", name, asset.sha256)
    api = WebappApi(core, wake)
    return [*api.routes(prefix), web.get(prefix + "{path:[A-Za-z0-9_./-]+}", _serve(assets))]


def build_webapp(team_public_key: bytes, team_verify_key: bytes | None = None) -> web.Application:
    """The pages alone as a sub-application (the crypto interop tests mount it by itself)."""
    assets = static_assets(team_public_key, team_verify_key)
    app = web.Application(client_max_size=16 * 1024)
    app[ASSETS] = assets
    app.router.add_get("/{path:.+}", _serve(assets))
    return app
