"""The bot the benchmarks drive: real Application, fake Bot API on 127.0.0.1, fresh data."""

from __future__ import annotations

import io
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sandbox import FakeBotApi
from tests.conftest import RunningBot, make_keys, make_settings, start_bot, stop_bot


@asynccontextmanager
async def bench_bot(*, limits: bool = False, **env: str) -> AsyncIterator[RunningBot]:
    """A running bot whose members may send fast (benchmarks send many updates a minute);
    ``limits`` has the fake Bot API refuse (429) what Telegram would."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_keys(data_dir)
        async with FakeBotApi(limits=limits) as api:
            settings = make_settings(
                data_dir, api, **{"SAFERELAY_MESSAGES_PER_MINUTE": "1000", **env}
            )
            app = await start_bot(api, settings)
            try:
                yield RunningBot(api, app, settings, io.StringIO())
            finally:
                await stop_bot(app)
