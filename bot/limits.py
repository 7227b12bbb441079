"""Per-sender flood limit, in memory only (keys are person ids or keyed lookups, never
Telegram ids): a phone stuck in a loop, or someone hammering the bot, cannot flood the
staff or the database."""

from __future__ import annotations

import enum
import random
from collections import deque

WINDOW_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 300.0
MAX_KEYS = 10_000


class Verdict(enum.Enum):
    OK = "ok"
    FIRST_REFUSAL = "first_refusal"  # tell them once, calmly
    REFUSED = "refused"  # then stay quiet until the window has room again


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self._limit = per_minute
        self._events: dict[str, deque[float]] = {}
        self._warned: set[str] = set()

    def check(self, key: str, now: float) -> Verdict:
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= MAX_KEYS:
                self._forget_idle(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - WINDOW_SECONDS:
            events.popleft()
        if len(events) < self._limit:
            events.append(now)
            self._warned.discard(key)
            return Verdict.OK
        if key in self._warned:
            return Verdict.REFUSED
        self._warned.add(key)
        return Verdict.FIRST_REFUSAL

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, e in self._events.items() if not e or e[-1] <= now - WINDOW_SECONDS]:
            del self._events[key]
            self._warned.discard(key)


def backoff(attempts: int) -> float:
    """Retry delay after ``attempts`` failures: 1, 2, 4 ... seconds with jitter, at most
    five minutes (outbox sends and chat deletions alike)."""
    base = min(MAX_BACKOFF_SECONDS, 2.0 ** min(attempts, 16))
    return base * random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not a secret
