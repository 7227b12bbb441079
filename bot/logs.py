"""Logging that never carries an identity or a secret.

Our own code logs no ids, names or text. Third-party loggers are held at WARNING (httpx logs
every request URL, and the URL holds the bot token; PTB at DEBUG logs whole updates). As a
last line, a filter on the handler rewrites every record: the token and any run of six or
more digits (Telegram user, chat and message ids are that long) become placeholders.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import TextIO

_LONG_NUMBER = re.compile(r"(?<![\d.])-?\d{6,}(?![\d.])")
_TOKEN = re.compile(r"\d{5,16}:[A-Za-z0-9_-]{30,}")
NOISY = ("httpx", "httpcore", "telegram", "apscheduler", "aiosqlite", "alembic")


class RedactingFilter(logging.Filter):
    """Renders each record once and replaces tokens and long numbers in the result."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        message = _TOKEN.sub("<token>", message)
        message = _LONG_NUMBER.sub("<n>", message)
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception text may quote a request (with the token) or an id; keep the type
            # and the traceback's code locations, drop the message.
            exc_type, _exc, tb = record.exc_info
            where = "".join(traceback.format_tb(tb))
            name = exc_type.__name__ if exc_type else "Exception"
            record.exc_info = None
            record.exc_text = (
                f"Traceback (most recent call last):\n{where}{name} (message withheld)"
            )
        return True


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Log to ``stream`` (stderr) through the redacting filter; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    return handler
