"""Run the fake Bot API standalone: ``python -m sandbox --port 8081 --token ...``.

``--limits`` enforces Telegram's flood limits (``--per-second``, ``--chat-burst`` and
``--chat-per-second`` change their numbers); see the package README.

Besides the Bot API it serves a small JSON control API for manual checks::

    curl -s 127.0.0.1:8081/_fake/state
    curl -s -XPOST 127.0.0.1:8081/_fake/send -d '{"user_id": 1001, "text": "/start"}'
    curl -s -XPOST 127.0.0.1:8081/_fake/press -d '{"user_id": 1001, "button": "Yes"}'
    curl -s -XPOST 127.0.0.1:8081/_fake/block -d '{"user_id": 1001}'
    curl -s -XPOST 127.0.0.1:8081/_fake/limits -d '{"enabled": true}'
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from sandbox.server import (
    DEFAULT_CHAT_BURST,
    DEFAULT_CHAT_PER_SECOND,
    DEFAULT_PER_SECOND,
    DEFAULT_TOKEN,
    FakeBotApi,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Fake Telegram Bot API on 127.0.0.1"
    )
    parser.add_argument("--port", type=int, default=8081, help="port (0 = random; default 8081)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="bot token to accept")
    parser.add_argument("--username", default="saferelay_test_bot", help="bot username")
    parser.add_argument(
        "--limits",
        action="store_true",
        help="enforce Telegram's flood limits (429 with retry_after when exceeded)",
    )
    parser.add_argument(
        "--per-second",
        type=int,
        default=DEFAULT_PER_SECOND,
        help=f"limits: calls in any 1 s window, all chats (default {DEFAULT_PER_SECOND})",
    )
    parser.add_argument(
        "--chat-burst",
        type=int,
        default=DEFAULT_CHAT_BURST,
        help=f"limits: token bucket size per chat (default {DEFAULT_CHAT_BURST})",
    )
    parser.add_argument(
        "--chat-per-second",
        type=float,
        default=DEFAULT_CHAT_PER_SECOND,
        help=f"limits: bucket refill per chat, a second (default {DEFAULT_CHAT_PER_SECOND})",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    # Ctrl-C and SIGTERM set an event rather than interrupting whatever is running, so the
    # shutdown below always runs, and runs to its end.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        server = FakeBotApi(
            args.token,
            args.username,
            port=args.port,
            limits=args.limits,
            per_second=args.per_second,
            chat_burst=args.chat_burst,
            chat_per_second=args.chat_per_second,
        )
    except ValueError as exc:
        raise SystemExit(f"python -m sandbox: {exc}") from None
    await server.start()
    try:
        print(server.base_url, flush=True)
        print(f"base_file_url: {server.base_file_url}", file=sys.stderr)
        print(f"control API:   http://127.0.0.1:{server.port}/_fake/state", file=sys.stderr)
        if server.limits:
            print(
                f"Telegram limits: {server.per_second}/s overall, per chat a bucket of "
                f"{server.chat_burst} refilled at {server.chat_per_second}/s",
                file=sys.stderr,
            )
        print("Ctrl-C stops the server.", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await asyncio.wait_for(server.stop(), timeout=5)
        print("stopped", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
