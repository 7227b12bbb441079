"""The bot's own web server (bot/web.py): routes added by modules, served on 127.0.0.1."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from bot.web import WebServer


async def _hello(_request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def _echo_size(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


async def test_serves_the_routes_modules_add_with_plain_safe_headers() -> None:
    # Given a server with one module's routes
    server = WebServer("127.0.0.1", 0, max_body_bytes=1024)
    server.add_routes([web.get("/hello", _hello), web.post("/size", _echo_size)])
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as client:
            # When a browser asks for a page
            async with client.get(f"{base}/hello") as response:
                body = await response.text()
                headers = response.headers
            # Then it gets it, uncached, with no server banner
            assert body == "hello"
            assert headers["Cache-Control"] == "no-store"
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert "Server" not in headers
            # and a body over the limit is refused without being read
            async with client.post(f"{base}/size", data=b"x" * 2048) as response:
                assert response.status == 413
            async with client.get(f"{base}/elsewhere") as response:
                assert response.status == 404
    finally:
        await server.stop()
    assert not server.running
    await server.stop()  # twice is harmless


async def test_routes_cannot_be_added_once_serving() -> None:
    server = WebServer("127.0.0.1", 0)
    assert not server.has_routes
    server.add_routes([web.get("/", _hello)])
    await server.start()
    try:
        with pytest.raises(RuntimeError):
            server.add_routes([web.get("/late", _hello)])
    finally:
        await server.stop()


async def _framable(_request: web.Request) -> web.Response:
    policy = "default-src 'none'; frame-ancestors https://web.telegram.org"
    return web.Response(text="page", headers={"Content-Security-Policy": policy})


async def test_nothing_is_framable_except_what_names_its_framers() -> None:
    # Given a plain route and one that says, in its CSP, who may frame it
    server = WebServer("127.0.0.1", 0)
    server.add_routes([web.get("/plain", _hello), web.get("/page", _framable)])
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as client:
            # Then the plain one (and an unknown path) may be framed by nobody
            for path in ("/plain", "/elsewhere"):
                async with client.get(base + path) as response:
                    assert response.headers["X-Frame-Options"] == "DENY"
            # And the other keeps its own rule, with no X-Frame-Options contradicting it
            async with client.get(f"{base}/page") as response:
                assert "X-Frame-Options" not in response.headers
                assert (
                    "frame-ancestors https://web.telegram.org"
                    in (response.headers["Content-Security-Policy"])
                )
    finally:
        await server.stop()
