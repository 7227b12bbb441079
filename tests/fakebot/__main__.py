"""Run the fake Bot API standalone: ``python -m tests.fakebot --port 8081 --token ...``.

Besides the Bot API it serves a small JSON control API for manual checks::

    curl -s 127.0.0.1:8081/_fake/state
    curl -s -XPOST 127.0.0.1:8081/_fake/send -d '{"user_id": 1001, "text": "/start"}'
    curl -s -XPOST 127.0.0.1:8081/_fake/press -d '{"user_id": 1001, "button": "Yes"}'
    curl -s -XPOST 127.0.0.1:8081/_fake/block -d '{"user_id": 1001}'
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tests.fakebot.server import DEFAULT_TOKEN, FakeBotApi


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakebot", description="Fake Telegram Bot API on 127.0.0.1"
    )
    parser.add_argument("--port", type=int, default=8081, help="port (0 = random; default 8081)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="bot token to accept")
    parser.add_argument("--username", default="saferelay_test_bot", help="bot username")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    server = FakeBotApi(args.token, args.username, port=args.port)
    await server.start()
    try:
        print(server.base_url, flush=True)
        print(f"base_file_url: {server.base_file_url}", file=sys.stderr)
        print(f"control API:   http://127.0.0.1:{server.port}/_fake/state", file=sys.stderr)
        print("Ctrl-C stops the server.", file=sys.stderr, flush=True)
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
