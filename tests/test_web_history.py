"""The mood timeline: what is kept (24 h, on disk, atomically) and how it is drawn."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest

from device.status import StatusBoard
from web_config.history import COLOURS, MoodHistory, Segment, prune, segments, timeline_svg

HOUR = 3600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_prune_keeps_the_last_older_event() -> None:
    """Dropping it would leave the start of the window without a mood."""
    events = [(0.0, "sad"), (10.0, "happy"), (100.0, "neutral")]
    assert prune(events, now=105.0, keep_s=50.0) == [(10.0, "happy"), (100.0, "neutral")]


def test_segments_are_clipped_to_the_window() -> None:
    events = [(0.0, "sad"), (50.0, None), (80.0, "happy")]
    assert segments(events, now=100.0, span_s=70.0) == [
        Segment(30.0, 50.0, "sad"),
        Segment(50.0, 80.0, None),
        Segment(80.0, 100.0, "happy"),
    ]


def test_history_records_changes_only_and_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock(10 * HOUR)
    path = tmp_path / "mood-history.json"
    history = MoodHistory(path, clock=clock)
    history.record("happy")
    clock.now += 60
    history.record("happy")
    clock.now += 60
    history.record("sad")
    assert json.loads(path.read_text()) == [[10 * HOUR, "happy"], [10 * HOUR + 120, "sad"]]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    clock.now += 60
    again = MoodHistory(path, clock=clock)
    assert [s.mood for s in again.segments(HOUR)] == ["happy", "sad"]


def test_history_forgets_what_is_older_than_a_day(tmp_path: Path) -> None:
    clock = Clock(0.0)
    history = MoodHistory(tmp_path / "h.json", clock=clock)
    for hours, mood in [(0, "sad"), (10, "happy"), (20, "fear"), (40, "neutral")]:
        clock.now = hours * HOUR
        history.record(mood)
    kept = json.loads((tmp_path / "h.json").read_text())
    assert [m for _, m in kept] == ["happy", "fear", "neutral"]


def test_unreadable_history_starts_afresh_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "h.json"
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        history = MoodHistory(path, clock=Clock(HOUR))
    assert history.segments(HOUR) == []
    assert "unreadable" in caplog.text


def test_history_follows_the_status_board(tmp_path: Path) -> None:
    """If the subscription broke, the timeline would stay empty while moods change."""
    clock = Clock(HOUR)
    status = StatusBoard()
    history = MoodHistory(tmp_path / "h.json", clock=clock)
    history.attach(status)
    clock.now += 10
    status.update(mood="happy", fps=4.0)
    clock.now += 10
    status.update(fps=5.0)
    clock.now += 10
    status.update(mood="sad")
    clock.now += 5
    assert [(s.mood, s.end - s.start) for s in history.segments(HOUR)] == [
        (None, 10.0),
        ("happy", 20.0),
        ("sad", 5.0),
    ]


def test_svg_draws_each_mood_in_its_colour_with_hour_labels() -> None:
    now = 1_700_000_000.0
    parts = [Segment(now - 2 * HOUR, now - HOUR, "happy"), Segment(now - HOUR, now, "sad")]
    svg = timeline_svg(parts, now, 6 * HOUR, local_time=time.gmtime)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count(COLOURS["happy"]) == 1 and svg.count(COLOURS["sad"]) == 1
    assert "<title>happy 20:13–21:13</title>" in svg
    labels = re.findall(r'<text x="([\d.]+)"[^>]*>(\d\d:\d\d)</text>', svg)
    assert [clock for _, clock in labels] == ["17:00", "18:00", "19:00", "20:00", "21:00"], (
        "22:00 sits 4 minutes before now, at the edge, where it would be cut"
    )
