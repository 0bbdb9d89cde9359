"""Finding the listener anywhere in the room, then following them cheaply.

A whole 1536×864 frame squeezed into a detector's input leaves a face at 3 m a few
pixels wide, so finding faces and following them are two jobs here:

- A *scan* looks at the frame in windows: the whole frame letterboxed (short-range and
  full-range models: faces near the camera), then overlapping tiles two thirds of the
  frame's height, cut from the full-resolution frame (full-range: faces to 4 m and more).
  A scan is spread over frames, a few windows a frame, so no frame pays for all of it.
- A face found is *followed*: next frame, the short-range model looks at a window three
  times the face's size around where it was. That is one small inference per face per
  frame, at the face's own resolution, however far away it sits.

A scan looks at one window a frame, so a whole scan takes ten frames. A face the
follower misses for a few frames is dropped and a scan starts at once; for a while after
the last face was seen the short-range model also looks at the whole frame on every
frame, so a listener who comes back near the device is found on the frame they appear.
While someone is followed a scan still runs now and then, so a second person, or someone
nearer, is noticed. Time is the frames' own
(`now`), so a replayed file behaves as it did live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from device.detector import Face, FaceDetector, Window, iou, merge_faces

TILE_SHARE = 2 / 3  # a scan tile's side, as a share of the frame's shorter side
TILE_OVERLAP = 0.28  # tiles overlap by this share of their side, so a face fits in one


@dataclass(frozen=True)
class TrackerSettings:
    follow_scale: float = 3.0  # follow window side / face side
    max_misses: int = 2  # frames a followed face may go unseen before it is dropped
    windows_per_frame: int = 1  # scan windows looked at per frame
    eager_s: float = 30.0  # after the last face, look at the whole frame every frame this long
    rescan_s: float = 20.0  # while someone is followed, start a slow scan this often
    max_faces: int = 4  # faces followed at once (the largest: the nearest)


def tile_windows(width: int, height: int) -> list[Window]:
    """Overlapping square tiles covering the frame, row by row."""
    side = round(min(width, height) * TILE_SHARE)
    stride = side * (1 - TILE_OVERLAP)

    def starts(length: int) -> np.ndarray:
        count = max(1, math.ceil((length - side) / stride) + 1)
        return np.linspace(0, max(length - side, 0), count)

    return [Window(float(x), float(y), side) for y in starts(height) for x in starts(width)]


@dataclass
class _Followed:
    face: Face
    misses: int = 0


class FaceTracker:
    """Faces in a stream of frames: scanned for, then followed (see the module docstring)."""

    def __init__(
        self,
        near: FaceDetector,
        far: FaceDetector,
        settings: TrackerSettings = TrackerSettings(),
    ) -> None:
        self.near = near  # short-range: the whole frame, and following
        self.far = far  # full-range: the whole frame and its tiles
        self.settings = settings
        self._followed: list[_Followed] = []
        self._scan: list[tuple[FaceDetector, Window]] = []  # what the scan under way has left
        self._next_scan_at: float | None = None  # None: scan now
        self._last_seen: float | None = None  # when a face was last followed
        self.inferences = 0  # detector calls so far, for the bench

    def scan_steps(self, width: int, height: int) -> list[tuple[FaceDetector, Window]]:
        """A scan's windows in order, the short-range look at the whole frame first."""
        whole = Window.whole(width, height)
        tiles = [(self.far, tile) for tile in tile_windows(width, height)]
        return [(self.near, whole), (self.far, whole), *tiles]

    def scan(self, rgb: np.ndarray) -> list[Face]:
        """Every face in one still image, in one go, largest first; forgets what it followed."""
        height, width = rgb.shape[:2]
        self.reset()
        found = [
            face for step in self.scan_steps(width, height) for face in self._detect(rgb, *step)
        ]
        return merge_faces(found)[: self.settings.max_faces]

    def track(self, rgb: np.ndarray, now: float) -> list[Face]:
        """The faces seen in this frame of a stream, largest first."""
        if self._last_seen is not None and now < self._last_seen:  # a replayed file restarted
            self._last_seen, self._next_scan_at = now, None
        self._follow(rgb)
        self._advance_scan(rgb, now)
        if self._followed or self._last_seen is None:
            self._last_seen = now
        return sorted((f.face for f in self._followed if f.misses == 0), key=_area, reverse=True)

    def reset(self) -> None:
        self._followed.clear()
        self._scan = []
        self._next_scan_at = None
        self._last_seen = None

    @property
    def following(self) -> int:
        return len(self._followed)

    def _detect(self, rgb: np.ndarray, detector: FaceDetector, window: Window) -> list[Face]:
        self.inferences += 1
        return detector.detect_in(rgb, window)

    def _look_again(self, rgb: np.ndarray, face: Face) -> Face | None:
        """Where `face` is now: the nearest detection in a window around it, if any is
        closer than its own width."""
        window = Window.around(face, self.settings.follow_scale)
        cx, cy = face.centre
        best, best_distance = None, face.width
        for candidate in self._detect(rgb, self.near, window):
            x, y = candidate.centre
            distance = math.hypot(x - cx, y - cy)
            if distance < best_distance:
                best, best_distance = candidate, distance
        return best

    def _follow(self, rgb: np.ndarray) -> None:
        lost = False
        for followed in self._followed:
            seen = self._look_again(rgb, followed.face)
            if seen is None:
                followed.misses += 1
                lost |= followed.misses > self.settings.max_misses
            else:
                followed.face, followed.misses = seen, 0
        kept = []
        for followed in self._followed:
            if followed.misses > self.settings.max_misses:
                continue
            # Two followers that ended on one face: keep one.
            if not any(_overlaps(followed.face, other.face, 0.5) for other in kept):
                kept.append(followed)
        self._followed = kept
        if lost:
            self._next_scan_at = None  # someone went out of view: look everywhere, now

    def _advance_scan(self, rgb: np.ndarray, now: float) -> None:
        height, width = rgb.shape[:2]
        empty_for = 0.0 if self._last_seen is None else now - self._last_seen
        eager = not self._followed and empty_for < self.settings.eager_s
        if eager:  # someone just left, or it just started: a returning face is found at once
            for face in self._detect(rgb, self.near, Window.whole(width, height)):
                self._start_following(rgb, face)
        if not self._scan:
            due = self._next_scan_at is None or now >= self._next_scan_at
            if self._followed and not due:
                return
            self._scan = self.scan_steps(width, height)[1 if eager else 0 :]
        count = self.settings.windows_per_frame
        steps, self._scan = self._scan[:count], self._scan[count:]
        for detector, window in steps:
            for face in self._detect(rgb, detector, window):
                self._start_following(rgb, face)
        if not self._scan:
            self._next_scan_at = now + self.settings.rescan_s

    def _start_following(self, rgb: np.ndarray, face: Face) -> None:
        """Follow a face a scan found, once the follower confirms it in this frame (a
        check that rejects most false faces and fixes the box to this frame)."""
        if any(_overlaps(face, f.face, 0.3) for f in self._followed):
            return
        confirmed = self._look_again(rgb, face)
        if confirmed is None or any(_overlaps(confirmed, f.face, 0.3) for f in self._followed):
            return
        self._followed.append(_Followed(confirmed))
        self._followed.sort(key=lambda f: _area(f.face), reverse=True)
        del self._followed[self.settings.max_faces :]


def _area(face: Face) -> float:
    return face.area


def _overlaps(a: Face, b: Face, threshold: float) -> bool:
    return bool(iou(np.array(a.corners()), np.array([b.corners()]))[0] > threshold)
