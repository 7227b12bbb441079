"""What the bot did, as one log line a day of aggregate counts -- never a line per event.

A log line with a time on it is evidence: "check-in stored 03:12" or "quick exit" next to
an arrest date would tell more than any ciphertext. So nothing member-related is logged
when it happens. What an operator needs to see that the bot is healthy -- how many updates
it handled, messages it sent, deletions and sends that failed, records purged -- is counted
in memory and logged once a day as totals. Duress, quick exit, erasure, check-ins and
enrolment are not counted at all: even a daily "1 duress" is a dated event.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Literal, get_args

log = logging.getLogger(__name__)

Kind = Literal[
    "updates handled",
    "messages sent",
    "sends failed",
    "chat messages cleared",
    "chat clears failed",
    "escalations",
    "prompts sent",
    "welfare steps",
    "records purged",
    # Sends that waited for another turn, theirs having passed (a loaded machine).
    "turns missed",
    # Posts to the webhook without Telegram's secret: someone probing the address.
    "webhook posts refused",
]
KINDS: tuple[Kind, ...] = get_args(Kind)
REPORT_SECONDS = 24 * 3600

_counts: Counter[str] = Counter()


def count(kind: Kind, n: int = 1) -> None:
    """Add ``n`` to a counter (process-wide, like logging itself)."""
    _counts[kind] += n


def report() -> str:
    """Log the totals since the last report, then start again from zero."""
    line = "last 24 h: " + ", ".join(f"{_counts[kind]} {kind}" for kind in KINDS)
    _counts.clear()
    log.info("%s", line)
    return line
