"""The mood machine: per-frame emotion probabilities in, calm mood and presence events out.

Pure logic: no I/O, no clock of its own (every call says what time it is, in seconds
on any monotonic scale), so it behaves the same live, on a replayed clip and in tests.

- Probabilities are smoothed exponentially with a time constant in seconds, so the
  behaviour does not depend on the frame rate.
- The smoothed top emotion is a *candidate* when it reaches the threshold; it becomes
  the mood only after holding for the dwell time, and never sooner than the minimum
  interval after the previous mood change (switching playlists every few seconds is
  what users hate most).
- Nobody seen for `absent_after_s` means absence; the mood is kept for the return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from device.config import MoodConfig


@dataclass(frozen=True)
class MoodSettings:
    time_constant_s: float
    threshold: float
    dwell_s: float
    min_switch_interval_s: float
    absent_after_s: float

    @classmethod
    def from_config(cls, config: MoodConfig) -> MoodSettings:
        return cls(
            config.time_constant_s,
            config.threshold,
            config.dwell_s,
            config.min_switch_interval_s,
            config.absent_after_s,
        )


@dataclass(frozen=True)
class MoodChanged:
    at: float
    mood: str
    previous: str | None
    scores: dict[str, float]  # the smoothed probabilities when it changed
    reason: str


@dataclass(frozen=True)
class PresenceChanged:
    at: float
    present: bool


Event = MoodChanged | PresenceChanged


def combine_faces(faces: Sequence[tuple[float, np.ndarray]], follow: str) -> np.ndarray | None:
    """One probability vector from (face area, probabilities) pairs, or None for no face.

    `largest` follows the largest face; `room` averages every face equally.
    """
    if not faces:
        return None
    if follow == "room":
        return np.mean([probs for _, probs in faces], axis=0)
    return max(faces, key=lambda face: face[0])[1]


class MoodMachine:
    def __init__(self, labels: Sequence[str], settings: MoodSettings) -> None:
        self.labels = tuple(labels)
        self.settings = settings
        self.mood: str | None = None
        self.present = False
        self.smoothed: np.ndarray | None = None
        self.candidate: str | None = None
        self._candidate_since = 0.0
        self._last_face_at: float | None = None
        self._last_change_at: float | None = None

    def scores(self) -> dict[str, float]:
        if self.smoothed is None:
            return {}
        return {label: float(p) for label, p in zip(self.labels, self.smoothed, strict=True)}

    def observe(
        self, now: float, probabilities: Sequence[float] | np.ndarray | None
    ) -> list[Event]:
        """One analysed frame at time `now`: the followed face's probabilities, or None."""
        if probabilities is None:
            return self._no_face(now)
        events: list[Event] = []
        probs = np.asarray(probabilities, dtype=np.float64)
        if not self.present:
            self.present = True
            events.append(PresenceChanged(now, True))
        self._smooth(now, probs)
        self._last_face_at = now
        self._update_candidate(now)
        change = self._maybe_change(now)
        if change:
            events.append(change)
        return events

    def _smooth(self, now: float, probs: np.ndarray) -> None:
        if self.smoothed is None or self._last_face_at is None:
            self.smoothed = probs.copy()
            return
        dt = max(now - self._last_face_at, 0.0)
        tau = self.settings.time_constant_s
        alpha = 1.0 if tau <= 0 else 1.0 - math.exp(-dt / tau)
        self.smoothed += alpha * (probs - self.smoothed)

    def _update_candidate(self, now: float) -> None:
        assert self.smoothed is not None
        best = int(np.argmax(self.smoothed))
        candidate = self.labels[best] if self.smoothed[best] >= self.settings.threshold else None
        if candidate != self.candidate:
            self.candidate = candidate
            self._candidate_since = now

    def _maybe_change(self, now: float) -> MoodChanged | None:
        if self.candidate is None or self.candidate == self.mood:
            return None
        held = now - self._candidate_since
        if held < self.settings.dwell_s:
            return None
        if (
            self._last_change_at is not None
            and now - self._last_change_at < self.settings.min_switch_interval_s
        ):
            return None
        previous, self.mood, self._last_change_at = self.mood, self.candidate, now
        scores = self.scores()
        reason = f"{self.mood} held {held:.1f} s at {scores[self.mood]:.0%}"
        return MoodChanged(now, self.mood, previous, scores, reason)

    def _no_face(self, now: float) -> list[Event]:
        if (
            self.present
            and self._last_face_at is not None
            and now - self._last_face_at >= self.settings.absent_after_s
        ):
            self.present = False
            self.smoothed = None
            self.candidate = None
            self._last_face_at = None
            return [PresenceChanged(now, False)]
        return []
