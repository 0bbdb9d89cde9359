"""Frame sources and the capture thread: newest frame only, recovery from a lost camera."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from device.camera import (
    CameraError,
    Capture,
    Frame,
    ImageSource,
    OpenCVSource,
    full_view_mode,
    open_source,
)
from device.status import StatusBoard
from tests.frames import background, write_clip
from tests.waiting import wait_until


class CountingCamera:
    """Stands in for the Pi camera (which this machine lacks): numbered frames at a fixed
    rate, failing like an unplugged camera after `fail_after` frames."""

    description = "counting camera"

    def __init__(self, fps: float = 100.0, fail_after: int | None = None) -> None:
        self.period = 1 / fps
        self.fail_after = fail_after
        self.produced = 0

    def read(self) -> Frame:
        time.sleep(self.period)
        if self.fail_after is not None and self.produced >= self.fail_after:
            raise CameraError("no frame (camera unplugged?)")
        self.produced += 1
        return Frame(np.zeros((4, 4, 3), np.uint8), time.monotonic(), self.produced)

    def close(self) -> None:
        pass


def test_auto_says_clearly_that_no_camera_was_found() -> None:
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a webcam")
    with pytest.raises(CameraError, match=r"no camera found \(picamera2: .*; /dev/video0: not"):
        open_source("auto", 640, 480, 5.0)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="no such device or file"):
        open_source(str(tmp_path / "nope.avi"), 640, 480, 5.0)


def test_image_folder_in_name_order_with_media_time(tmp_path: Path) -> None:
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), background(seed=i))
    source = open_source(str(tmp_path), 640, 480, fps=4.0, realtime=False)
    assert isinstance(source, ImageSource)
    frames = [source.read() for _ in range(4)]
    assert [f.timestamp for f in frames[:3]] == [0.0, 0.25, 0.5]
    assert frames[3] is None


def test_a_looped_image_is_a_camera_showing_it_at_the_frame_rate(tmp_path: Path) -> None:
    """`run --source photo.png --loop`: the image is read again at the camera's rate, so a
    new picture put in its place is seen within a frame, and no core spins."""
    import cv2

    image = tmp_path / "view.png"
    cv2.imwrite(str(image), background(seed=1))
    capture = Capture(lambda: open_source(str(image), 640, 480, fps=10.0), StatusBoard(), loop=True)
    capture.start()
    try:
        started, cpu = time.monotonic(), time.process_time()
        frames = []
        while time.monotonic() - started < 1.0:
            if (frame := capture.latest(timeout=0.5)) is not None:
                frames.append(frame)
        assert 8 <= len(frames) <= 12
        assert time.process_time() - cpu < 0.5
        cv2.imwrite(str(tmp_path / "next.png"), background(seed=2))
        (tmp_path / "next.png").replace(image)
        wait_until(
            lambda: (
                (f := capture.latest(timeout=0.5)) is not None
                and not np.array_equal(f.rgb, frames[0].rgb)
            ),
            timeout=2,
            what="the new picture",
        )
    finally:
        capture.stop()


def test_video_file_replays_at_its_own_rate(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", [background(seed=i) for i in range(10)], fps=20)
    fast = OpenCVSource(str(clip), 640, 480, realtime=False)
    stamps = []
    while (frame := fast.read()) is not None:
        stamps.append(frame.timestamp)
    assert stamps == pytest.approx([i / 20 for i in range(10)])
    started = time.monotonic()
    paced = OpenCVSource(str(clip), 640, 480, realtime=True)
    while paced.read() is not None:
        pass
    assert time.monotonic() - started >= 0.4  # 10 frames at 20 fps: 0.45 s of media


def test_the_analyser_always_gets_the_newest_frame() -> None:
    """A slow analyser must not work through a backlog of stale frames."""
    camera = CountingCamera(fps=200)
    capture = Capture(lambda: camera, StatusBoard())
    capture.start()
    try:
        taken = []
        for _ in range(5):
            time.sleep(0.1)  # a slow analysis step
            frame = capture.latest(timeout=1)
            assert frame is not None
            taken.append(frame.index)
            assert camera.produced - frame.index <= 3  # at most the frames of the hand-over
        assert taken == sorted(taken) and taken[-1] - taken[0] >= 40  # frames were dropped
    finally:
        capture.stop()


def test_lossless_replay_delivers_every_frame_in_order() -> None:
    source_frames = 50

    class Finite(CountingCamera):
        def read(self):
            return None if self.produced >= source_frames else super().read()

    finite = Finite(fps=1000)
    capture = Capture(lambda: finite, StatusBoard(), lossless=True)
    capture.start()
    try:
        got = []
        while len(got) < source_frames:
            frame = capture.latest(timeout=2)
            assert frame is not None
            got.append(frame.index)
            time.sleep(0.002)
        assert got == list(range(1, source_frames + 1))
        wait_until(capture.ended.is_set)
    finally:
        capture.stop()


def test_a_lost_camera_is_retried_and_recovers() -> None:
    """Unplugged, missing for two attempts, then back: frames flow again, status says so."""
    status = StatusBoard()
    states: list[str] = []
    status.subscribe(lambda changed: states.append(changed.get("camera_state", "")))
    attempts = {"n": 0}
    lock = threading.Lock()

    def opener() -> CountingCamera:
        with lock:
            attempts["n"] += 1
            n = attempts["n"]
        if n == 1:
            return CountingCamera(fps=200, fail_after=5)
        if n in (2, 3):
            raise CameraError("no camera found")
        return CountingCamera(fps=200)

    capture = Capture(opener, status, retry_delays=(0.05,))
    capture.start()
    try:
        wait_until(lambda: attempts["n"] >= 4 and status.get("camera_state") == "running")
        assert capture.latest(timeout=2) is not None
    finally:
        capture.stop()
    assert [s for s in states if s][:4] == ["running", "lost", "unavailable", "running"]


def test_switching_the_camera_off_closes_it() -> None:
    status = StatusBoard()
    capture = Capture(lambda: CountingCamera(fps=200), status)
    capture.start()
    try:
        wait_until(lambda: status.get("camera_state") == "running")
        capture.set_enabled(False)
        wait_until(lambda: status.get("camera_state") == "off")
        capture.latest(timeout=0.1)  # drain the last frame
        assert capture.latest(timeout=0.3) is None
        capture.set_enabled(True)
        wait_until(lambda: status.get("camera_state") == "running")
    finally:
        capture.stop()


def _modes(*rows: tuple[tuple[int, int], float, tuple[int, int, int, int]]) -> list[dict]:
    return [
        {"size": size, "fps": fps, "crop_limits": crop, "bit_depth": 10} for size, fps, crop in rows
    ]


# As `rpicam-hello --list-cameras` lists them.
IMX708 = _modes(  # Camera Module 3
    ((1536, 864), 120.13, (768, 432, 3072, 1728)),
    ((2304, 1296), 56.03, (0, 0, 4608, 2592)),
    ((4608, 2592), 14.35, (0, 0, 4608, 2592)),
)
IMX219 = _modes(  # Camera Module 2
    ((640, 480), 206.65, (1000, 752, 1280, 960)),
    ((1640, 1232), 41.85, (0, 0, 3280, 2464)),
    ((1920, 1080), 47.57, (680, 692, 1920, 1080)),
    ((3280, 2464), 21.19, (0, 0, 3280, 2464)),
)


@pytest.mark.parametrize(
    ("modes", "size", "fps", "chosen"),
    [
        (IMX708, (1536, 864), 5, (2304, 1296)),  # not the cropped 1536×864 mode
        (IMX708, (3000, 1700), 5, (4608, 2592)),
        (IMX708, (3000, 1700), 30, (2304, 1296)),  # the full mode is too slow: largest fast one
        (IMX219, (1536, 864), 5, (1640, 1232)),  # not the cropped 1920×1080 mode
        (IMX219, (640, 480), 5, (1640, 1232)),
    ],
)
def test_the_camera_module_keeps_its_full_field_of_view(
    modes: list[dict], size: tuple[int, int], fps: float, chosen: tuple[int, int]
) -> None:
    """A cropped sensor mode would narrow the view and shrink the room the device sees."""
    mode = full_view_mode(modes, *size, fps)
    assert mode is not None and mode["size"] == chosen


def test_no_sensor_modes_leaves_the_choice_to_picamera2() -> None:
    assert full_view_mode([], 1536, 864, 5) is None
