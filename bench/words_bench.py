"""Clear and safety words (crypto/words.py): what a guess costs an attacker, and what
checking a message costs the bot.

(a) Attacker with a copy of the data directory AND the server secrets (the pepper): each
    guess against one member is one ``word_digest`` (keyed BLAKE2b prehash + Argon2id at
    ``WORD_COST``); salts are per member, so a dictionary has to be run once per member.
(b) The bot: every short one-line text from a member (``could_be_word``) costs the same one
    derivation, in a worker thread (``bot.safety.matches``); long or multi-line texts,
    commands and button presses cost none. Past the flood limit a member still gets word
    checks, up to ``2 x SAFERELAY_MESSAGES_PER_MINUTE`` a minute (handlers/access.py).

Everything is measured by calling the real functions; figures are medians of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bot.people import Actor
from bot.safety import matches
from crypto.hashing import Pepper
from crypto.keystore import SecretsDir
from crypto.words import WORD_COST, could_be_word, word_digest
from storage.models import Role, new_id, word_filler
from tests.conftest import make_keys, secrets_of

LONG_TEXT = "We are fine today, thank you. The children are at school and I will write later."


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    """Seconds per call, ``repeat`` times (after one warm-up call)."""
    call()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def throughput(threads: int, per_thread: int, pepper: Pepper) -> float:
    """Derivations per second with ``threads`` running at once (PyNaCl releases the GIL)."""
    person_ids = [new_id() for _ in range(threads)]

    def work(person_id: str) -> None:
        for n in range(per_thread):
            word_digest(pepper, person_id, f"guess{n}")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, person_ids))
    return threads * per_thread / (time.perf_counter() - started)


async def async_timed(make: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    out = []
    for n in range(repeat + 1):
        started = time.perf_counter()
        await make()
        if n:  # the first one is a warm-up (thread pool start)
            out.append(time.perf_counter() - started)
    return out


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms (min {min(values) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per figure")
    parser.add_argument("--dictionary", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=500, help="for the all-members line")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    memlimit_mib = WORD_COST.memlimit / 2**20
    print(
        f"WORD_COST: Argon2id, opslimit {WORD_COST.opslimit}, memlimit {memlimit_mib:.0f} MiB; "
        f"{cores} cores ({os.uname().machine})"
    )

    # (a) the attacker: one guess = one word_digest.
    pepper = Pepper(os.urandom(32))
    person_id = new_id()
    rss_before = peak_rss_mib()
    per_guess = timed(lambda: word_digest(pepper, person_id, "sunflower"), args.repeat)
    rss_one = peak_rss_mib()
    one_core = [throughput(1, 10, pepper) for _ in range(3)]
    all_cores = [throughput(cores, 10, pepper) for _ in range(3)]
    rss_all = peak_rss_mib()
    rate = statistics.median(all_cores)
    dictionary_s = args.dictionary / rate

    print()
    print("(a) attacker with the data directory and the pepper")
    print(f"  time per guess (one derivation, one core)   {ms(per_guess)}")
    print(
        f"  memory per guess in flight                  {memlimit_mib:8.0f} MiB (peak RSS "
        f"+{rss_one - rss_before:.0f} MiB for one, +{rss_all - rss_before:.0f} MiB "
        f"for {cores} at once)"
    )
    print(f"  guesses/s, one core                         {statistics.median(one_core):8.1f}")
    print(f"  guesses/s, {cores} cores                         {rate:8.1f}")
    print(
        f"  {args.dictionary:,}-word dictionary, one member      {dictionary_s:8.0f} s "
        f"({dictionary_s / 60:.1f} min)"
    )
    print(
        f"  the same against {args.members} members           "
        f"{dictionary_s * args.members / 3600:8.1f} h (salts are per member)"
    )

    # (b) the bot: the check in access control, as it runs there.
    async def bot_side() -> tuple[list[float], list[float], list[float]]:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            make_keys(data_dir)
            keys = SecretsDir(secrets_of(data_dir)).load()
            member_id = new_id()
            actor = Actor(
                person_id=member_id,
                role=Role.MEMBER,
                pseudonym="M 1",
                language="en",
                language_chosen=True,
                code_word=word_digest(keys.pepper, member_id, "tulip"),
                duress_word=word_filler(),
            )
            assert await matches(keys, actor, "Tulip") is not None
            short = await async_timed(lambda: matches(keys, actor, "see you at 5"), args.repeat)
            long = await async_timed(lambda: matches(keys, actor, LONG_TEXT), args.repeat)
            derive = timed(lambda: word_digest(keys.pepper, member_id, "see you at 5"), args.repeat)
            return short, long, derive

    short, long, derive = asyncio.run(bot_side())
    gate = timed(lambda: could_be_word(LONG_TEXT), args.repeat)
    per_core = 1 / statistics.median(derive)

    print()
    print("(b) the bot, per member message")
    print(f"  derivation (word_digest)                    {ms(derive)}")
    print(f"  short one-line text: matches() awaited      {ms(short)}  <- added latency")
    print(f"  long text / command / button: matches()    {statistics.median(long) * 1e6:8.1f} µs")
    print(f"  could_be_word() on a long text              {statistics.median(gate) * 1e6:8.1f} µs")
    print(f"  short texts checked per second, one core    {per_core:8.1f}")
    print(f"  ... on {cores} cores (worker threads)             {rate:8.1f}")


if __name__ == "__main__":
    main()
