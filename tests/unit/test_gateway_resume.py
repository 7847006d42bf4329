"""Saved gateway sessions (adapters/discord/gateway/resume.py): what a restart may resume, from a file."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.discord.gateway.events import ResumeState
from adapters.discord.gateway.resume import RESUME_WINDOW, load_sessions, save_sessions, session_file

STATE = ResumeState(session_id="abc", seq=41, resume_url="wss://gateway-us-east1-b.discord.gg")


def test_saved_sessions_load_back_within_the_resume_window(tmp_path: Path) -> None:
    path = session_file(str(tmp_path / "bridge.sqlite3"))
    assert path.name == "bridge.sqlite3.session.json"
    save_sessions(path, {0: STATE, 3: STATE}, now=1000.0)
    assert load_sessions(path, now=1000.0 + RESUME_WINDOW) == {0: STATE, 3: STATE}
    assert load_sessions(path, now=1000.0 + RESUME_WINDOW + 1) == {}  # Discord has let it go by now
    assert load_sessions(path, now=999.0) == {}  # saved "in the future": the clock moved, do not trust it


def test_missing_unreadable_or_partly_bad_files_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s.session.json"
    assert load_sessions(path, now=0.0) == {}
    path.write_text("{not json", encoding="utf-8")
    assert load_sessions(path, now=0.0) == {}
    path.write_text(json.dumps({"sessions": {}}), encoding="utf-8")
    assert load_sessions(path, now=0.0) == {}
    good, bad = STATE.to_json(), {"session_id": "", "seq": 1, "resume_url": "wss://x"}
    path.write_text(json.dumps({"saved_at": 5.0, "sessions": {"0": good, "1": bad, "x": good}}), encoding="utf-8")
    assert load_sessions(path, now=6.0) == {0: STATE}
