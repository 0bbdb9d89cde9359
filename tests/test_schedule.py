"""Quiet hours and the volume schedule, including ranges that cross midnight."""

from __future__ import annotations

from device.schedule import in_time_range, scheduled_volume


def test_quiet_hours_across_midnight() -> None:
    assert in_time_range("22:00-07:00", 23 * 60)
    assert in_time_range("22:00-07:00", 6 * 60 + 59)
    assert not in_time_range("22:00-07:00", 7 * 60)
    assert not in_time_range("22:00-07:00", 12 * 60)


def test_quiet_hours_within_a_day_and_empty() -> None:
    assert in_time_range("13:00-14:30", 14 * 60)
    assert not in_time_range("13:00-14:30", 14 * 60 + 30)
    assert not in_time_range("", 0)


def test_volume_schedule_latest_entry_wins_and_wraps() -> None:
    spec = "07:00=40, 19:00=25"
    assert scheduled_volume(spec, 8 * 60) == 40
    assert scheduled_volume(spec, 20 * 60) == 25
    assert scheduled_volume(spec, 3 * 60) == 25  # still last night's setting
    assert scheduled_volume("", 0) is None
