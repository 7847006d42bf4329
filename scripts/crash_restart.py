#!/usr/bin/env python3
"""kill -9 during a message stream, restarted at once: the figures of the README's Reliability section.

    python scripts/crash_restart.py                     # both gateways: one that resumes, one that refuses to
    python scripts/crash_restart.py --rate 500 --crashes 2 --repeat 3

Runs tests/integration/crash_scenario.py: the real bridge process (``python -m relay run``) against the emulated
Discord and a fake framework on loopback, SIGKILL ``--crashes`` times during a ``--rate`` messages/s stream, each
time started again at once, and reports per run: messages sent, missing, duplicates, identifies and resumes, and
the bridge's own log lines about what it resumed or back-filled.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.crash_scenario import run_crash_scenario  # noqa: E402 (after the path set-up above)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second (default 500)")
    parser.add_argument("--crashes", type=int, default=2, help="kill -9 this many times (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per gateway behaviour (default 1)")
    parser.add_argument("--verbose", action="store_true", help="also print the bridge's recovery lines")
    args = parser.parse_args()
    worst = 0
    for refuse in (False, True):
        name = "gateway refusing every resume" if refuse else "gateway honouring resume"
        for run in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                result = trio.run(
                    functools.partial(
                        run_crash_scenario, Path(tmp), refuse_resume=refuse, rate=args.rate, crashes=args.crashes
                    )
                )
            print(f"{name}, run {run + 1}: {result.summary()}")
            if args.verbose:
                for line in (*result.resume_lines, *result.backfill_lines):
                    print("    " + line.split(" ", 2)[-1])
            worst = max(worst, result.missing)
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
