"""The yearly report over 100,000 sealed check-ins: its time against the opens alone, and
its peak memory.

A fresh database gets ``--members`` members and ``--checkins`` check-ins spread over ten
years, each sealed to the team key by the real sealer for its own row (so each opens only
there), inserted in bulk. Then, in one run:

1. the reference: every sealed check-in, already in memory, opened with the team key
   (``TeamOpener.open``, the X25519 sealed box and the AEAD): the work no report can skip;
2. ``saferelay report`` (``bot.cli.main``, in this process, stdout to a buffer): unlock the
   team key (the test KDF cost, not the coordinator's 1 GiB), stream the check-ins, open,
   tally per member and year, save the yearly sums, hide small numbers, print the table;
3. the same command in a subprocess, for its peak resident memory (``VmHWM``), next to
   the same command on an empty database (what the interpreter and imports take alone).

Reported: ``--reps`` alternating runs of 1 and 2, their CPU time (all threads) and wall
time, the median ratio of 2 to 1 within a repetition (the goal: within 1.5x), and the peak
memory of 3.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

from bot.checkins import CheckInAnswers, sealed_place
from bot.cli import main
from crypto.keystore import SecretsDir, unlock_team_key
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import CheckIn, Person, Role, day, new_id
from tests.conftest import PASSPHRASE, make_keys, secrets_of, team_key_of

INSERT_BATCH = 5000


async def seed(data_dir: Path, members: int, checkins: int) -> None:
    """Members and their sealed check-ins, straight through SQL (the seeding is not timed)."""
    sealer = SecretsDir(secrets_of(data_dir)).load().team_sealer
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'saferelay.db'}")
    await migrate(engine)
    rng = random.Random(12)
    people = [new_id() for _ in range(members)]
    if not people:  # the empty database of the memory baseline
        await engine.dispose()
        return
    start = datetime(2014, 1, 1, tzinfo=UTC)
    async with make_sessionmaker(engine)() as session, session.begin():
        await session.execute(
            insert(Person),
            [
                {
                    "id": person,
                    "tg_lookup": rng.randbytes(32),
                    "chat_ref": b"x",
                    "role": Role.MEMBER.value,
                    "pseudonym": f"member {n}",
                    "language": "ko",
                }
                for n, person in enumerate(people)
            ],
        )
        for first in range(0, checkins, INSERT_BATCH):
            rows = []
            for _ in range(min(INSERT_BATCH, checkins - first)):
                checkin_id = new_id()
                answers = CheckInAnswers(rng.randint(1, 5), rng.random() < 0.5)
                rows.append(
                    {
                        "id": checkin_id,
                        "person_id": rng.choice(people),
                        "created_at": day(start + timedelta(days=rng.randrange(3650))),
                        "sealed": sealer.seal(answers.to_bytes(), sealed_place(checkin_id)),
                    }
                )
            await session.execute(insert(CheckIn), rows)
    await engine.dispose()


async def sealed_rows(data_dir: Path) -> list[tuple[str, bytes]]:
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'saferelay.db'}")
    async with make_sessionmaker(engine)() as session:
        rows = [(i, s) for i, s in await session.execute(select(CheckIn.id, CheckIn.sealed))]
    await engine.dispose()
    return rows


def clocks() -> tuple[float, float]:
    """Wall clock and this process's CPU time (every thread: aiosqlite's too). The CPU
    time is what the ratio uses: other work on a shared machine inflates wall time."""
    return time.perf_counter(), time.process_time()


def since(began: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - began[0], cpu - began[1]


def time_opens(data_dir: Path, rows: list[tuple[str, bytes]]) -> tuple[float, float]:
    opener = unlock_team_key(team_key_of(data_dir), PASSPHRASE)
    began = clocks()
    for checkin_id, sealed in rows:
        opener.open(sealed, sealed_place(checkin_id))
    return since(began)


def report_env(data_dir: Path) -> dict[str, str]:
    return {
        "SAFERELAY_DATA_DIR": str(data_dir),
        "SAFERELAY_SECRETS_DIR": str(secrets_of(data_dir)),
        "SAFERELAY_PASSPHRASE": PASSPHRASE,
    }


def time_report(data_dir: Path) -> tuple[tuple[float, float], str]:
    out = io.StringIO()
    began = clocks()
    with contextlib.redirect_stdout(out):
        assert main(["report", "--key", str(team_key_of(data_dir))]) == 0
    return since(began), out.getvalue()


def peak_memory(data_dir: Path) -> int:
    """Peak resident memory (KiB) of `saferelay report` in its own process (Linux)."""
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark into ru_maxrss
    # across fork and exec, and the parent holds every sealed record for the reference.
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from bot.cli import main\n"
        f"main(['report', '--key', {str(team_key_of(data_dir))!r}])\n"
        "status = Path('/proc/self/status').read_text().splitlines()\n"
        "print([s.split()[1] for s in status if s.startswith('VmHWM')][0], file=sys.stderr)\n"
    )
    done = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", script],
        env={**os.environ, **report_env(data_dir)},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stderr.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, empty_dir = Path(tmp) / "data", Path(tmp) / "empty" / "data"
        for directory in (data_dir, empty_dir):
            make_keys(directory)
        began = time.perf_counter()
        asyncio.run(seed(data_dir, args.members, args.checkins))
        asyncio.run(seed(empty_dir, 0, 0))
        print(
            f"seeded {args.checkins:,} check-ins of {args.members:,} members "
            f"in {time.perf_counter() - began:.1f} s"
        )
        os.environ.update(report_env(data_dir))
        rows = asyncio.run(sealed_rows(data_dir))
        opens, reports = [], []
        for _ in range(args.reps):
            opens.append(time_opens(data_dir, rows))
            seconds, table = time_report(data_dir)
            reports.append(seconds)
        print(table.splitlines()[0])
        print("\n".join(table.splitlines()[1:4]) + "\n...")
        for name, runs in (("opens alone", opens), ("yearly report", reports)):
            cpu = statistics.median(c for _, c in runs)
            walls = ", ".join(f"{w:.2f}" for w, _ in runs)
            print(f"{name:<14} CPU {cpu:.2f} s (median of {len(runs)}); wall {walls} s")
        ratios = [r[1] / o[1] for o, r in zip(opens, reports, strict=True)]
        print(
            f"ratio report / opens (CPU, same rep): median {statistics.median(ratios):.2f}x, "
            f"range {min(ratios):.2f}-{max(ratios):.2f}x (goal <= 1.5x); "
            f"{statistics.median(c for _, c in opens) / len(rows) * 1e6:.0f} us per open"
        )
        full, empty = peak_memory(data_dir), peak_memory(empty_dir)
        print(
            f"peak RSS: report over {len(rows):,} check-ins {full / 1024:.0f} MiB; "
            f"on an empty database {empty / 1024:.0f} MiB; difference "
            f"{(full - empty) / 1024:.0f} MiB"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--checkins", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    run(parse())
