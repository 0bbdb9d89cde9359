"""Times of day in settings: quiet hours and the volume schedule, as pure functions."""

from __future__ import annotations


def _minutes(clock: str) -> int:
    hours, minutes = clock.strip().split(":")
    return int(hours) * 60 + int(minutes)


def in_time_range(spec: str, minute_of_day: int) -> bool:
    """Whether `minute_of_day` (0..1439) falls in `HH:MM-HH:MM`; ranges may cross midnight.

    An empty spec is no range at all; the start is inclusive, the end exclusive.
    """
    if not spec:
        return False
    start_text, _, end_text = spec.partition("-")
    start, end = _minutes(start_text), _minutes(end_text)
    if start <= end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end


def scheduled_volume(spec: str, minute_of_day: int) -> int | None:
    """The volume (percent) in force at `minute_of_day` from `HH:MM=percent, ...`.

    The latest entry at or before the time wins; before the first entry of the day the
    last one of the previous day still holds. None when there is no schedule.
    """
    if not spec:
        return None
    entries = sorted((_minutes(clock), int(percent)) for clock, _, percent in
                     (item.strip().partition("=") for item in spec.split(",")))
    current = entries[-1][1]
    for start, percent in entries:
        if start <= minute_of_day:
            current = percent
    return current
