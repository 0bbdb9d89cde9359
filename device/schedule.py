"""Times of day in settings, quiet hours and the volume schedule, as pure functions."""

from __future__ import annotations

from datetime import time as dtime


def _minutes(clock: str) -> int:
    hours, minutes = clock.strip().split(":")
    return int(hours) * 60 + int(minutes)


def quiet_hours_left(spec: str, now: dtime) -> float:
    """Seconds until the quiet hours `spec` (HH:MM-HH:MM, may span midnight) end; 0 outside.

    The start is inclusive, the end exclusive; an empty spec is no quiet hours at all.
    """
    if not spec:
        return 0.0
    start, _, end = spec.partition("-")
    begin, finish = _minutes(start), _minutes(end)
    minute = now.hour * 60 + now.minute + now.second / 60
    inside = begin <= minute < finish if begin <= finish else minute >= begin or minute < finish
    if not inside:
        return 0.0
    return ((finish - minute) % 1440) * 60


def scheduled_volume(schedule: str, now: dtime) -> int | None:
    """The volume for `now` from `HH:MM=percent, ...`: the latest entry at or before it,
    else the last of the day (it carries over midnight); None without a schedule."""
    if not schedule:
        return None
    entries = sorted(
        (_minutes(clock), int(percent))
        for clock, _, percent in (item.partition("=") for item in schedule.split(","))
    )
    minute = now.hour * 60 + now.minute
    earlier = [percent for at, percent in entries if at <= minute]
    return earlier[-1] if earlier else entries[-1][1]
