"""Faces across a living room: found at the sizes a camera on a shelf sees them, followed
from frame to frame, lost and found again, and never invented in an empty room.

The frames are real photos (faces_in_the_wild) pasted at the width a face has at a
given distance into generated rooms at 1536×864 (tests/room.py).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.config import Config
from device.detector import Face, FaceDetector, Window, crop_face
from device.pipeline import Analyser
from device.tracker import FaceTracker, tile_windows
from tests.daemon_process import DaemonProcess, write_config
from tests.frames import write_clip
from tests.room import FRAME, Person, face_px, is_found, lamp_light, paste, people, room


@pytest.fixture(scope="module")
def cast() -> tuple[Person, ...]:
    return people(Config().model_path("face_detector"), 12)


@pytest.fixture(scope="module")
def analyser() -> Analyser:
    return Analyser.from_config(Config())


@pytest.fixture()
def tracker(analyser: Analyser) -> FaceTracker:
    analyser.tracker.reset()
    return analyser.tracker


def frame_with(
    cast: tuple[Person, ...], placed: list[tuple[int, float, tuple[float, float]]], seed: int = 0
) -> tuple[np.ndarray, list[Face]]:
    """A room with people `placed` as (index in cast, distance in m, face centre)."""
    canvas = room(seed)
    truths = [paste(canvas, cast[i], face_px(d), centre, seed + i) for i, d, centre in placed]
    return lamp_light(canvas, seed), truths


def stream(tracker: FaceTracker, frames: list[np.ndarray], start: float = 0.0) -> list[list[Face]]:
    return [tracker.track(frame, start + i * 0.2) for i, frame in enumerate(frames)]


def test_tiles_cover_the_frame_with_overlap() -> None:
    """A face sitting on a tile border must lie wholly inside some tile."""
    tiles = tile_windows(*FRAME)
    assert len(tiles) == 8
    assert min(t.x for t in tiles) == 0 and max(t.x + t.side for t in tiles) == FRAME[0]
    assert min(t.y for t in tiles) == 0 and max(t.y + t.side for t in tiles) == FRAME[1]
    xs = sorted({t.x for t in tiles})
    assert all(b - a <= tiles[0].side * 0.72 + 1 for a, b in itertools.pairwise(xs))


@pytest.mark.parametrize("distance", [0.5, 1.0, 2.0, 3.0, 4.0])
def test_faces_are_found_from_half_a_metre_to_four(
    tracker: FaceTracker, cast: tuple[Person, ...], distance: float
) -> None:
    """What the shipped short-range model alone missed beyond about 0.6 m."""
    rng = np.random.default_rng(round(distance * 10))
    found = 0
    for i in range(6):
        width = face_px(distance)
        centre = (rng.uniform(width * 1.5, FRAME[0] - width * 1.5), rng.uniform(260, 470))
        frame, (truth,) = frame_with(cast, [(i, distance, centre)], seed=i)
        found += is_found(tracker.scan(frame), truth)
    assert found >= 5, f"{found}/6 faces found at {distance} m"


def test_the_old_whole_frame_detection_misses_them(cast: tuple[Person, ...]) -> None:
    """Why the tracker exists: letterboxed into 128×128, a face at 2 m is a few pixels."""
    near = FaceDetector(Config().model_path("face_detector"))
    frame, (truth,) = frame_with(cast, [(0, 2.0, (700, 400))])
    assert not is_found(near.detect(frame), truth)


@pytest.mark.parametrize("edge", ["left", "right", "top"])
def test_faces_at_the_edges_are_found(
    tracker: FaceTracker, cast: tuple[Person, ...], edge: str
) -> None:
    for distance in (1.0, 3.0):
        width = face_px(distance)
        centre = {
            "left": (width * 0.6, 430.0),
            "right": (FRAME[0] - width * 0.6, 430.0),
            "top": (760.0, width * 0.7),
        }[edge]
        frame, (truth,) = frame_with(cast, [(1, distance, centre)], seed=3)
        assert is_found(tracker.scan(frame), truth), f"{edge} edge at {distance} m"


def test_of_two_people_the_nearer_is_followed(analyser: Analyser, cast: tuple[Person, ...]) -> None:
    """Two listeners, at 1.2 m and 3 m: both are found, and the daemon (largest face)
    follows the nearer one."""
    analyser.tracker.reset()
    frame, (near, far) = frame_with(cast, [(2, 1.2, (450, 380)), (3, 3.0, (1150, 420))], seed=5)
    faces = analyser.tracker.scan(frame)
    assert is_found(faces[:1], near) and is_found(faces, far)
    analyser.tracker.reset()
    for i in range(8):
        results = analyser.analyse(frame, now=i * 0.2, all_faces=False)
    assert [is_found([r.face], near) for r in results] == [True]
    assert analyser.tracker.following == 2


def test_a_moving_face_is_followed_with_one_small_inference_a_frame(
    tracker: FaceTracker, cast: tuple[Person, ...]
) -> None:
    """At 2.5 m a listener leans 8 px a frame for 30 frames: once found, every frame has
    the face, where it is, and following costs one detector call per frame."""
    canvas = room(7)
    frames, truths = [], []
    for step in range(40):
        copy = canvas.copy()
        truths.append(paste(copy, cast[4], face_px(2.5), (500 + 8 * min(step, 30), 420), 7))
        frames.append(lamp_light(copy, step))
    seen = stream(tracker, frames[:10])
    first = next(i for i, faces in enumerate(seen) if faces)
    assert first <= 5
    calls = tracker.inferences
    seen += stream(tracker, frames[10:], start=2.0)
    assert all(
        is_found(faces, truth) for faces, truth in zip(seen[first:], truths[first:], strict=True)
    )
    assert tracker.inferences - calls <= 30 + 2  # one per frame; the next scan is 20 s away


def test_a_lost_face_starts_a_scan_and_is_found_again(
    tracker: FaceTracker, cast: tuple[Person, ...]
) -> None:
    here, _ = frame_with(cast, [(5, 3.0, (300, 400))], seed=9)
    there, (moved,) = frame_with(cast, [(5, 3.0, (1250, 380))], seed=9)
    empty = lamp_light(room(9), 9)
    stream(tracker, [here] * 8)
    assert tracker.following == 1
    calls = tracker.inferences
    stream(tracker, [empty] * 4, start=2.0)
    assert tracker.following == 0
    # After the misses allowed: the whole frame and a scan window, every frame.
    assert tracker.inferences - calls >= 3 + 2
    seen = stream(tracker, [there] * 10, start=3.0)
    assert any(is_found(faces, moved) for faces in seen[:6])
    assert is_found(seen[-1], moved)


def test_nobody_there_means_no_face_after_full_scans(tracker: FaceTracker) -> None:
    windows = len(tracker.scan_steps(*FRAME))
    for seed in range(3):
        tracker.reset()
        empty = lamp_light(room(20 + seed), 20 + seed)
        assert all(faces == [] for faces in stream(tracker, [empty] * (2 * windows)))


def test_an_empty_room_is_scanned_quietly_after_a_while(tracker: FaceTracker) -> None:
    """Just emptied: the whole frame every frame besides the scan; later, the scan alone."""
    empty = lamp_light(room(30), 30)
    settings = tracker.settings
    stream(tracker, [empty] * 3)
    calls = tracker.inferences
    tracker.track(empty, 1.0)
    assert tracker.inferences - calls == 1 + settings.windows_per_frame
    calls = tracker.inferences
    tracker.track(empty, settings.eager_s + 1.0)
    assert tracker.inferences - calls == settings.windows_per_frame


def test_a_listener_who_comes_back_near_is_found_on_the_first_frame(
    tracker: FaceTracker, cast: tuple[Person, ...]
) -> None:
    """Back on the sofa at 0.8 m after being away: found on the frame they appear, wherever
    the scan under way has got to, not when its turn comes round."""
    empty = lamp_light(room(31), 31)
    back, (truth,) = frame_with(cast, [(7, 0.8, (1200, 420))], seed=31)
    for away in range(4, 16):  # frames away: the scan is at a different window each time
        tracker.reset()
        stream(tracker, [back] * 3)
        stream(tracker, [empty] * away, start=1.0)
        assert tracker.following == 0
        assert is_found(tracker.track(back, 1.0 + away * 0.2), truth), f"away {away} frames"


def test_the_emotion_crop_comes_from_the_full_resolution_frame(
    analyser: Analyser, cast: tuple[Person, ...]
) -> None:
    """A face at 3 m is about 59 px wide at 1536×864: the 48×48 crop keeps its detail, far
    more like the photo than a crop of the frame as the detector's input sees it."""
    frame, (truth,) = frame_with(cast, [(6, 3.0, (900, 400))], seed=11)
    (result,) = analyser.analyse(frame, all_faces=False)
    size = analyser.classifier.input_size
    crop = crop_face(frame, result.face, size, analyser.margin)
    assert np.allclose(
        analyser.classifier.predict(crop).probabilities, result.prediction.probabilities
    )
    # The same face cut from a frame shrunk as the detector's whole-frame input sees it.
    shrink = 128 / FRAME[0]
    thumb = cv2.resize(frame, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    small = Face(truth.x * shrink, truth.y * shrink, truth.width * shrink, truth.height * shrink, 1)
    from_thumb = crop_face(thumb, small, size, analyser.margin)
    full = crop_face(frame, truth, size, analyser.margin)
    reference = crop_face(cast[6].photo, cast[6].face, size, analyser.margin)

    def detail(image: np.ndarray) -> np.ndarray:
        """What is left after a blur: edges of eyes, mouth and brows."""
        pixels = image.astype(np.float32)
        return (pixels - cv2.GaussianBlur(pixels, (0, 0), 2.0)).ravel()

    ours = np.corrcoef(detail(full), detail(reference))[0, 1]
    thumbnail = np.corrcoef(detail(from_thumb), detail(reference))[0, 1]
    print(f"\ndetail kept: {ours:.2f} from the full frame, {thumbnail:.2f} from the thumbnail")
    assert ours > 0.5 and thumbnail < 0.3


def test_a_follow_window_reaching_past_the_frame_is_padded(analyser: Analyser) -> None:
    """A window around a face at the corner reaches outside the frame: black, no error."""
    frame = lamp_light(room(40), 40)
    assert analyser.tracker.near.detect_in(frame, Window(-300.0, -300.0, 500.0)) == []
    assert analyser.tracker.near.detect_in(frame, Window(5000.0, 5000.0, 100.0)) == []


def test_the_daemon_sees_a_listener_three_metres_away(
    cast: tuple[Person, ...], tmp_path: Path
) -> None:
    """The real daemon on a 1536×864 clip: nobody for 2 s, a listener sitting 3 m away for
    6 s, nobody again. Presence starts within a second of them sitting down and ends after
    the absence time; the device as first shipped never saw them at all."""
    canvas = room(50)
    sitting = canvas.copy()
    paste(sitting, cast[8], face_px(3.0), (520, 430), 50)
    fps = 5
    frames = [lamp_light(canvas, i) for i in range(2 * fps)]
    frames += [lamp_light(sitting, i) for i in range(6 * fps)]
    frames += [lamp_light(canvas, i) for i in range(4 * fps)]
    clip = write_clip(tmp_path / "room.avi", frames, fps)
    config = write_config(tmp_path / "config.toml", tmp_path / "state", clip)
    daemon = DaemonProcess.start(config, "--fast")
    try:
        daemon.wait_for("ended", timeout=120)
        daemon.terminate()
    finally:
        daemon.kill()
    presence = [(value, at) for kind, value, at in daemon.events() if kind == "presence"]
    assert [value for value, _ in presence] == ["someone there", "nobody there"]
    assert 2.0 <= presence[0][1] <= 3.0
    last_face = 8.0 - 1 / fps
    assert last_face + 2.0 <= presence[1][1] <= last_face + 2.0 + 0.5  # absent_after_s = 2
