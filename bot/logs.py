"""Logging that never carries an identity or a secret.

Our own code logs no ids, names or text. Third-party loggers are held at WARNING (httpx logs
every request URL, and the URL holds the bot token; PTB at DEBUG logs whole updates). As a
last line, a filter on the handler rewrites every record, whatever its logger or level:

- the bot token and any run of six or more digits (Telegram user, chat and message ids are
  that long) become placeholders; so do short ids wherever a field names them
  (``message_id=42``, ``"id": 7``), phone numbers written with spaces, dots or dashes
  (``+86 139 1234 5678``), coordinates (``39.0392, 125.7625``, ``latitude=...``) and file
  names (``passport scan.jpg``);
- every name, username and message text the bot has recently received (kept in memory only,
  see :func:`remember_values`) is replaced wherever it appears.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections import OrderedDict
from typing import TextIO

_RECENT_LIMIT = 5000
_recent: OrderedDict[str, None] = OrderedDict()


def remember_values(*values: str | None) -> None:
    """Register strings that must never reach a log line (names, usernames, texts).

    Process-wide, like logging itself. Each line of a text is registered too, and the
    JSON-escaped form, because libraries log request bodies in escaped or repr form.
    """
    for value in values:
        if not value or len(value.strip()) < 2:
            continue
        forms = {value, *(line for line in value.splitlines() if len(line.strip()) >= 2)}
        forms |= {json.dumps(f)[1:-1] for f in list(forms)}
        forms |= {json.dumps(f, ensure_ascii=False)[1:-1] for f in list(forms)}
        forms |= {repr(f)[1:-1] for f in list(forms)}
        for form in forms:
            _recent[form] = None
            _recent.move_to_end(form)
    while len(_recent) > _RECENT_LIMIT:
        _recent.popitem(last=False)


def forget_remembered() -> None:
    """Drop every registered value (tests; a fresh process starts empty anyway)."""
    _recent.clear()


def scrub(message: str) -> str:
    """Everything the module docstring promises, in an order where no step can break the
    next: the token first (a remembered word inside it must not split it), then whole
    fields of Telegram objects, invite links, remembered values, and long numbers."""
    message = _TOKEN.sub("<token>", message)
    message = _FIELD.sub(r"\1\2<redacted>\2", message)
    message = _INVITE.sub(r"\1<redacted>", message)
    for value in sorted(_recent, key=len, reverse=True):
        if value in message:
            message = message.replace(value, "<redacted>")
    message = _FILE_NAME.sub("<file>", message)
    message = _NUMERIC_FIELD.sub(r"\1<n>", message)
    message = _COORDINATES.sub("<place>", message)
    message = _LONG_NUMBER.sub("<n>", message)
    return _PHONE.sub(_phone, message)


_LONG_NUMBER = re.compile(r"(?<!\d)-?\d{6,}(?!\d)")
_TOKEN = re.compile(r"\d{5,16}:[A-Za-z0-9_-]{30,}")
# PTB logs whole updates and request parameters at DEBUG (as dicts, JSON, or object reprs
# such as Chat(first_name='...')), before any handler could register the names in them:
# their personal fields are redacted by name, whatever their value. A value is a quoted
# string with escapes; the closing quote is the same kind as the opening one.
_SENSITIVE_FIELDS = (
    "first_name",
    "last_name",
    "username",
    "text",
    "caption",
    "data",
    "title",
    "query",
    "phone_number",
    "vcard",
    "address",
    "bio",
    "name",
    "description",
    "start_parameter",
)
_FIELD = re.compile(
    r"""((?:['"](?:"""
    + "|".join(_SENSITIVE_FIELDS)
    + r""")['"]\s*:\s*|\b(?:"""
    + "|".join(_SENSITIVE_FIELDS)
    + r""")=))(['"])(?:\\.|(?!\2).)*\2""",
    re.DOTALL,
)
_INVITE = re.compile(r"(start[=\s]+)[A-Za-z0-9_-]{16,64}")
# Numbers whose field says they identify or locate something, however short.
_NUMERIC_FIELD = re.compile(
    r"""((?:['"]?\b(?:\w*_id|id|latitude|longitude|lat|lon|lng|phone|offset|date)['"]?)"""
    r"""\s*[:=]\s*)-?\d+(?:\.\d+)?""",
    re.IGNORECASE,
)
# A decimal-degrees pair, as a phone's location share or a pasted map link writes it.
_COORDINATES = re.compile(r"-?\d{1,3}\.\d{3,}\s*,\s*-?\d{1,3}\.\d{3,}")
# Seven or more digits in groups: +86 139 1234 5678, 010-1234-5678, (010) 1234.5678.
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{5,}\d(?![\w.])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}(?::\d{2}){0,2})?")


def _phone(match: re.Match[str]) -> str:
    """Seven digits or more make a phone number; a date or a version number does not."""
    found = match.group(0)
    digits = sum(c.isdigit() for c in found)
    if digits < 7 or _DATE.fullmatch(found.strip()):
        return found
    return "<phone>"


# A file name with an extension people send: photos, scans, documents, voice, video.
_FILE_NAME = re.compile(
    # Up to four words before the last (names like "passport scan 2.jpg"); each word is a
    # bounded run without spaces starting at a word boundary, so matching stays linear.
    r"(?<![^\s/\\'\"<>:=(\[{,])(?:[^\s/\\'\"<>:]{1,64} ){0,4}[^\s/\\'\"<>:]{0,64}\."
    r"(?:jpe?g|png|gif|heic|webp|bmp|tiff?|pdf|docx?|xlsx?|pptx?|hwp|txt|rtf|odt|csv|zip|rar"
    r"|7z|mp4|mov|avi|mkv|webm|mp3|m4a|ogg|oga|opus|wav|amr|apk|vcf)\b",
    re.IGNORECASE,
)
NOISY = ("httpx", "httpcore", "telegram", "apscheduler", "aiosqlite", "alembic")


class RedactingFilter(logging.Filter):
    """Renders each record once and replaces tokens and long numbers in the result."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            rendered = record.getMessage()
        except Exception:  # a malformed log call must not raise where it was made
            rendered = f"{record.msg} (unformattable log arguments)"
        record.msg, record.args = scrub(rendered), None
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


def configure_logging(
    level: int = logging.INFO, stream: TextIO | None = None, *, verbose_libraries: bool = False
) -> logging.Handler:
    """Log to ``stream`` (stderr) through the redacting filter; returns the handler.
    ``verbose_libraries`` lets PTB and httpx log at ``level`` too (for debugging; still
    redacted)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(
            level if verbose_libraries else max(level, logging.WARNING)
        )
    return handler
