"""The last hours' moods, kept on the device only, and their timeline as a small SVG chart."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from device import EMOTIONS
from device.atomic import write_atomic
from device.status import StatusBoard

logger = logging.getLogger(__name__)

HISTORY_FILE = "mood-history.json"
KEEP_S = 24 * 3600.0

COLOURS = {
    "angry": "#d64545",
    "disgust": "#7a9a3a",
    "fear": "#8a5cc2",
    "happy": "#f2b53a",
    "sad": "#3f7fd0",
    "surprise": "#e07bb5",
    "neutral": "#9aa3ad",
}


@dataclass(frozen=True)
class Segment:
    """`mood` held from `start` to `end` (epoch seconds); mood None: no mood (nobody there)."""

    start: float
    end: float
    mood: str | None


def prune(
    events: list[tuple[float, str | None]], now: float, keep_s: float
) -> list[tuple[float, str | None]]:
    """Drop events older than `keep_s`, but keep the last of them: it says what held then."""
    cutoff = now - keep_s
    older = [e for e in events if e[0] < cutoff]
    recent = [e for e in events if e[0] >= cutoff]
    return older[-1:] + recent


def segments(events: list[tuple[float, str | None]], now: float, span_s: float) -> list[Segment]:
    """The moods of the last `span_s` seconds as contiguous segments, clipped to the window."""
    start_of_window = now - span_s
    result = []
    ends = [t for t, _ in events[1:]] + [now]
    for (t, mood), next_t in zip(events, ends[: len(events)], strict=True):
        start, end = max(t, start_of_window), min(next_t, now)
        if end > start:
            result.append(Segment(start, end, mood))
    return result


def timeline_svg(
    parts: list[Segment],
    now: float,
    span_s: float,
    local_time: Callable[[float], time.struct_time] = time.localtime,
) -> str:
    """A 100%-wide bar of coloured mood segments with an hour scale and a legend."""
    width, bar_top, bar_height = 400.0, 2.0, 30.0
    x0 = now - span_s

    def x(t: float) -> float:
        return (t - x0) / span_s * width

    shapes = [f'<rect x="0" y="{bar_top}" width="{width}" height="{bar_height}" class="tl-empty"/>']
    for part in parts:
        if part.mood is None:
            continue
        label = f"{part.mood} {_clock(part.start, local_time)}–{_clock(part.end, local_time)}"
        shapes.append(
            f'<rect x="{x(part.start):.1f}" y="{bar_top}" '
            f'width="{max(x(part.end) - x(part.start), 1.0):.1f}" height="{bar_height}" '
            f'fill="{COLOURS[part.mood]}"><title>{escape(label)}</title></rect>'
        )
    step = 3600.0 * max(1, round(span_s / 3600 / 6))  # about six labels
    first = (x0 // 3600 + 1) * 3600
    tick = first
    while tick < now:
        shapes.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{bar_top}" '
            f'y2="{bar_top + bar_height + 4}" class="tl-tick"/>'
        )
        if 16 < x(tick) < width - 16:  # a label cut by the edge is worse than none
            shapes.append(
                f'<text x="{x(tick):.1f}" y="{bar_top + bar_height + 18}" '
                f'text-anchor="middle">{_clock(tick, local_time)}</text>'
            )
        tick += step
    return (
        f'<svg viewBox="0 0 {width:.0f} {bar_top + bar_height + 22:.0f}" role="img" '
        f'class="timeline" aria-label="moods of the last {span_s / 3600:g} hours">'
        + "".join(shapes)
        + "</svg>"
    )


def _clock(t: float, local_time: Callable[[float], time.struct_time]) -> str:
    return time.strftime("%H:%M", local_time(t))


class MoodHistory:
    """Mood changes of the last 24 h, saved atomically in the state folder on every change."""

    def __init__(
        self, path: Path, clock: Callable[[], float] = time.time, keep_s: float = KEEP_S
    ) -> None:
        self._path = path
        self._clock = clock
        self._keep_s = keep_s
        self._lock = threading.Lock()
        self._events = self._load()

    def _load(self) -> list[tuple[float, str | None]]:
        try:
            raw: Any = json.loads(self._path.read_text(encoding="utf-8"))
            events = [(float(t), m) for t, m in raw if m is None or m in EMOTIONS]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as err:
            logger.warning("mood history %s is unreadable, starting afresh: %s", self._path, err)
            return []
        return sorted(events)

    def attach(self, status: StatusBoard) -> None:
        """Record every mood change the status board announces, starting with the current one."""
        self.record(status.get("mood"))
        status.subscribe(
            lambda changed: self.record(changed["mood"]) if "mood" in changed else None
        )

    def record(self, mood: str | None) -> None:
        now = self._clock()
        with self._lock:
            if self._events and self._events[-1][1] == mood:
                return
            self._events = prune([*self._events, (now, mood)], now, self._keep_s)
            try:  # under the lock: two changes in a row must not be saved out of order
                write_atomic(self._path, json.dumps(self._events))
            except OSError as err:
                logger.warning("could not save the mood history to %s: %s", self._path, err)

    def segments(self, span_s: float) -> list[Segment]:
        with self._lock:
            events = list(self._events)
        return segments(events, self._clock(), span_s)

    def svg(self, span_s: float = 6 * 3600.0) -> str:
        return timeline_svg(self.segments(span_s), self._clock(), span_s)
