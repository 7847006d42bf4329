"""kill -9 twice during a 500 messages/s stream, restarted at once (issue 15): no message is missing, against a
gateway that honours resume and against one that refuses every resume (the back-fill recovers the gap), and
duplicates stay within one store flush interval's worth per crash. The scenario is tests/integration/
crash_scenario.py; scripts/crash_restart.py prints the same figures for the README.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.integration.crash_scenario import FLUSH_INTERVAL, run_crash_scenario

RATE = 500.0
CRASHES = 2


@pytest.mark.parametrize("refuse_resume", [False, True], ids=["resuming-server", "server-refusing-resume"])
async def test_kill_9_twice_during_a_stream_loses_nothing(tmp_path: Path, refuse_resume: bool) -> None:
    with trio.fail_after(240):
        result = await run_crash_scenario(tmp_path, refuse_resume=refuse_resume, rate=RATE, crashes=CRASHES)
    print(result.summary())
    for line in (*result.resume_lines, *result.backfill_lines):
        print("   ", line)
    assert result.missing == 0, result.summary()
    # each crash may repeat what was delivered in the last flush interval before it (plus the framework's cursor,
    # saved with the same flush): at most that many messages per crash
    assert result.duplicates <= CRASHES * RATE * FLUSH_INTERVAL * 2, result.summary()
    if refuse_resume:
        assert len(result.backfill_lines) == CRASHES, "each gap must have been read back from the history"
    else:
        # the session is saved with every flush: each restart resumes it, nothing needs reading back
        assert (result.identifies, result.resumed, len(result.backfill_lines)) == (1, CRASHES, 0), result.summary()
        assert all("may have reached a framework" in line for line in result.resume_lines if "previous run" in line)
