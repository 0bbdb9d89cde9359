"""Frame sources (Pi camera, V4L2 webcam, video file or stream, image folder) and capture.

A `Capture` thread reads the source and hands over only the newest frame through a
one-slot mailbox: the analyser never works on a stale frame. A lost or missing camera
is retried with backoff and reported in the status; the daemon keeps running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from device.status import StatusBoard

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
RETRY_DELAYS = (1, 2, 5, 10, 30, 60)  # seconds between attempts to (re)open the camera


class CameraError(RuntimeError):
    """The source cannot be opened or stopped delivering frames."""


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # H×W×3, uint8, RGB order
    timestamp: float  # seconds: capture time (monotonic) or, for a file, its media time
    index: int
    clip_time: float | None = None  # a file's frame: its position in the file, seconds
    still: bool = False  # one of a folder of unrelated images, not a moment of a stream

    def moment(self) -> str:
        """When this frame was, for a person: its place in a file, or the wall-clock time."""
        return describe_moment(self.clip_time)


def describe_moment(clip_time: float | None) -> str:
    """`clip 12.3 s` for a file's frame, else the local wall-clock time, `14:03:21`."""
    if clip_time is not None:
        return f"clip {clip_time:.1f} s"
    return time.strftime("%H:%M:%S")


class FrameSource(Protocol):
    description: str

    def read(self) -> Frame | None:
        """The next frame; None at the end of a file. Raises CameraError when the camera fails."""

    def close(self) -> None: ...


def _pace(media_time: float, started: float, realtime: bool) -> float:
    """A file frame's timestamp. In real time: wait for its moment and stamp it on the
    monotonic clock like a camera frame (so a looped file keeps time moving forward).
    Flat out: its media time, so a replay is reproducible."""
    if not realtime:
        return media_time
    due = started + media_time
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return due


def full_view_mode(modes: list[dict], width: int, height: int, fps: float) -> dict | None:
    """The sensor mode to scale a width×height output from without narrowing the view.

    picamera2 would otherwise take the mode nearest the output size, and on the Camera
    Module 3 the 1536×864 mode is a crop of the sensor's centre, two thirds of its width.
    Of the modes that read the whole sensor (the largest crop) and reach `fps`, the
    smallest that is at least as large as the output; None lets picamera2 choose.
    """

    def crop_area(mode: dict) -> int:
        return int(mode["crop_limits"][2]) * int(mode["crop_limits"][3])

    def pixels(mode: dict) -> int:
        return int(mode["size"][0]) * int(mode["size"][1])

    if not modes:
        return None
    widest = max(crop_area(m) for m in modes)
    candidates = [m for m in modes if crop_area(m) == widest and m.get("fps", fps) >= fps]
    if not candidates:
        return None
    large_enough = [m for m in candidates if m["size"][0] >= width and m["size"][1] >= height]
    return min(large_enough, key=pixels) if large_enough else max(candidates, key=pixels)


class Picamera2Source:
    """The Raspberry Pi camera module through picamera2 (from apt on Raspberry Pi OS), at
    its full field of view."""

    def __init__(self, width: int, height: int, fps: float) -> None:
        from picamera2 import Picamera2  # Pi-only; imported only when this source is used

        self._camera = Picamera2()
        mode = full_view_mode(self._camera.sensor_modes, width, height, fps)
        sensor = {"output_size": mode["size"], "bit_depth": mode["bit_depth"]} if mode else {}
        config = self._camera.create_video_configuration(
            main={"size": (width, height), "format": "RGB888"}, sensor=sensor
        )
        self._camera.configure(config)
        self._camera.start()
        self._index = 0
        scaled = f" from the {mode['size'][0]}×{mode['size'][1]} sensor mode" if mode else ""
        self.description = f"picamera2 ({width}×{height}{scaled})"

    def read(self) -> Frame:
        try:
            pixels = self._camera.capture_array("main")
        except Exception as err:
            raise CameraError(f"picamera2 capture failed: {err}") from err
        self._index += 1
        # picamera2's "RGB888" is laid out B, G, R in memory (OpenCV order).
        return Frame(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB), time.monotonic(), self._index)

    def close(self) -> None:
        self._camera.close()


class OpenCVSource:
    """A V4L2 device, a video file or a stream URL through OpenCV.

    A file is replayed at its own frame rate unless `realtime` is false (see `_pace`).
    """

    def __init__(self, spec: str | int, width: int, height: int, realtime: bool = True) -> None:
        self._capture = cv2.VideoCapture(spec)
        if not self._capture.isOpened():
            raise CameraError(f"cannot open {spec!r}")
        self.is_file = isinstance(spec, str) and Path(spec).is_file()
        if not self.is_file:
            # Webcams give their large modes at a usable rate only as MJPG.
            self._capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._fps = self._capture.get(cv2.CAP_PROP_FPS) or 25.0
        self._realtime = realtime
        self._started = time.monotonic()
        self._index = 0
        kind = "video file" if self.is_file else "OpenCV capture"
        self.description = f"{kind} {spec}"

    def read(self) -> Frame | None:
        ok, bgr = self._capture.read()
        if not ok:
            if self.is_file:
                return None
            raise CameraError(f"{self.description}: no frame (camera unplugged?)")
        self._index += 1
        if not self.is_file:
            return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic(), self._index)
        media_time = (self._index - 1) / self._fps
        stamp = _pace(media_time, self._started, self._realtime)
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stamp, self._index, clip_time=media_time)

    def close(self) -> None:
        self._capture.release()


class ImageSource:
    """An image, or the images of a folder in name order, as frames `1/fps` seconds apart."""

    def __init__(self, path: Path, fps: float, realtime: bool = True) -> None:
        if path.is_dir():
            self._files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            self._files = [path]
        if not self._files:
            raise CameraError(f"no images in {path}")
        self._period = 1.0 / fps
        self._realtime = realtime
        self._started = time.monotonic()
        self._index = 0
        self.description = f"images {path} ({len(self._files)})"

    def read(self) -> Frame | None:
        if self._index >= len(self._files):
            # In real time the last image lasts its period too, so a looped image is a camera
            # showing it at `fps` (re-read each turn), not a busy loop.
            _pace(self._index * self._period, self._started, self._realtime)
            return None
        path = self._files[self._index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CameraError(f"cannot read image {path}")
        media_time = self._index * self._period
        stamp = _pace(media_time, self._started, self._realtime)
        self._index += 1
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return Frame(rgb, stamp, self._index, clip_time=media_time, still=True)

    def close(self) -> None:
        pass


def open_source(
    spec: str, width: int, height: int, fps: float, realtime: bool = True
) -> FrameSource:
    """Open what `[camera] source` names; `auto` tries picamera2, then /dev/video0."""
    if spec == "auto":
        problems = []
        try:
            return Picamera2Source(width, height, fps)
        except ImportError:
            problems.append("picamera2: not installed")
        except Exception as err:  # picamera2 raises IndexError etc. when no camera is attached
            problems.append(f"picamera2: {err.__class__.__name__}: {err}")
        if Path("/dev/video0").exists():
            return OpenCVSource("/dev/video0", width, height, realtime)
        problems.append("/dev/video0: not present")
        raise CameraError("no camera found (" + "; ".join(problems) + ")")
    if spec == "picamera2":
        try:
            return Picamera2Source(width, height, fps)
        except Exception as err:
            raise CameraError(f"picamera2: {err.__class__.__name__}: {err}") from err
    if Path(spec).is_dir() or Path(spec).suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(Path(spec), fps, realtime)
    if spec.isdigit():
        return OpenCVSource(int(spec), width, height, realtime)
    if "://" not in spec and not Path(spec).exists():
        raise CameraError(f"{spec}: no such device or file")
    return OpenCVSource(spec, width, height, realtime)


class Capture:
    """The capture thread and its one-slot mailbox of the newest frame.

    With `lossless` (a file replayed flat out) the reader waits for the analyser
    instead of dropping frames, so a replay gives the same result every time.
    """

    def __init__(
        self,
        opener: Callable[[], FrameSource],
        status: StatusBoard,
        lossless: bool = False,
        loop: bool = False,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self._opener = opener
        self._status = status
        self._lossless = lossless
        self._loop = loop
        self._retry_delays = retry_delays
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._stop = threading.Event()
        self._enabled = threading.Event()
        self._enabled.set()
        self.ended = threading.Event()
        self.first_attempt = threading.Event()  # set once the camera was tried (ok or not)
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._enabled.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)

    def set_enabled(self, enabled: bool) -> None:
        """False closes the camera (privacy switch) until it is enabled again."""
        if enabled:
            self._enabled.set()
        else:
            self._enabled.clear()

    def latest(self, timeout: float) -> Frame | None:
        """Take the newest frame, waiting up to `timeout` seconds for one."""
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def _put(self, frame: Frame) -> None:
        with self._cond:
            while self._lossless and self._frame is not None and not self._stop.is_set():
                self._cond.wait(0.5)
            self._frame = frame  # without lossless, an unread frame is simply replaced
            self._cond.notify_all()

    def _run(self) -> None:
        attempt = 0
        using = ""  # the source last said to be in use: a looped file reopens without a word
        while not self._stop.is_set():
            if not self._enabled.is_set():
                self._status.update(camera_state="off", camera_detail="camera switched off")
                self.first_attempt.set()  # nothing to try: the start-up need not wait
                self._enabled.wait()
                continue
            try:
                source = self._opener()
            except Exception as err:
                delay = self._retry_delays[min(attempt, len(self._retry_delays) - 1)]
                attempt += 1
                logger.warning("camera: %s; retrying in %g s", err, delay)
                self._status.update(camera_state="unavailable", camera_detail=str(err))
                self.first_attempt.set()
                self._stop.wait(delay)
                using = ""
                continue
            attempt = 0
            if source.description != using:
                logger.info("camera: using %s", source.description)
                using = source.description
            self._status.update(
                camera_state="running", camera_source=source.description, camera_detail=""
            )
            self.first_attempt.set()
            try:
                finished = self._pump(source)
            finally:
                source.close()
            if not finished:
                using = ""  # lost or switched off: say so again when it is back
            elif not self._loop:
                logger.info("camera: %s ended", source.description)
                self._status.update(camera_state="ended", camera_detail="end of the file")
                self.ended.set()
                return

    def _pump(self, source: FrameSource) -> bool:
        """Read frames until stopped, disabled or failed; True at the end of a file."""
        while not self._stop.is_set() and self._enabled.is_set():
            try:
                frame = source.read()
            except CameraError as err:
                logger.warning("camera lost: %s", err)
                self._status.update(camera_state="lost", camera_detail=str(err))
                return False
            if frame is None:
                return True
            self._put(frame)
        return False
