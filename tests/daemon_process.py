"""Run the real daemon as a process on a replayed clip, and read what it says.

Shared by the daemon, sd_notify and end-to-end tests: building a clip from the shared
FER2013 faces, writing a config, starting `moodmelody run`, and parsing its log.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.config import Config
from device.pipeline import Analyser
from tests.conftest import home_environment
from tests.frames import FRAME_SIZE, background, face_files, face_frame, read_gray, write_clip

REPO = Path(__file__).resolve().parent.parent
MOOD_LINE = re.compile(r"mood changed: (no mood yet|\w+) -> (\w+) at clip ([\d.]+) s")
PRESENCE_LINE = re.compile(r"presence changed: (someone there|nobody there) at clip ([\d.]+) s")
PLAYER_LINE = re.compile(r"dry-run player: (play mood=(\w+)|pause)")


@functools.cache
def confident_faces(fer2013: Path, emotion: str, count: int = 8) -> tuple[Path, ...]:
    """The test faces of `emotion` that the shipped pipeline, seeing them pasted into a frame
    as the clip shows them, labels right most confidently (of the first 200). Clip tests are
    about the daemon's timing and wiring; the model's accuracy is measured elsewhere."""
    analyser = Analyser.from_config(Config())
    scored = []
    for path in face_files(fer2013, emotion, 200, seed=1):
        results = analyser.analyse(face_frame(read_gray(path)))
        if results:
            probs = results[0].prediction.probabilities
            if analyser.labels[int(np.argmax(probs))] == emotion:
                scored.append((float(probs.max()), path))
    chosen = sorted(scored, reverse=True)[:count]
    assert len(chosen) == count and chosen[-1][0] > 0.45, (
        f"too few confident {emotion} faces: {[round(p, 2) for p, _ in chosen]}"
    )
    return tuple(path for _, path in chosen)


def build_clip(
    path: Path,
    fer2013: Path,
    segments: list[tuple[str | None, float]],
    fps: float,
    size: tuple[int, int] = FRAME_SIZE,
) -> Path:
    """A clip of `segments`: (emotion or None for nobody, seconds), a new face each frame."""
    frames = []
    for emotion, seconds in segments:
        faces = confident_faces(fer2013, emotion) if emotion else ()
        for i in range(round(seconds * fps)):
            if emotion:
                frames.append(face_frame(read_gray(faces[i % len(faces)]), seed=i, size=size))
            else:
                frames.append(background(seed=i, size=size))
    return write_clip(path, frames, fps)


def write_config(path: Path, state_dir: Path, source: Path, extra: str = "") -> Path:
    path.write_text(f"""
[camera]
source = "{source}"
fps = 10.0
[mood]
time_constant_s = 0.5
threshold = 0.4
dwell_s = 1.5
min_switch_interval_s = 4.0
absent_after_s = 2.0
[web]
enabled = false
[paths]
state_dir = "{state_dir}"
{extra}
""")
    return path


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`moodmelody ARGS…` to its end, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "device.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@dataclass
class DaemonProcess:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, config: Path, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        """`moodmelody run --config config`, with HOME and XDG folders beside `config` (in a
        test's or bench's temporary folder), so that nothing lands in the real home."""
        home = home_environment(config.parent / "home")
        process = subprocess.Popen(
            [sys.executable, "-m", "device.cli", "run", "--config", str(config), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **home, **(env or {})},
        )
        os.set_blocking(process.stdout.fileno(), False)
        return cls(process)

    def read(self) -> list[str]:
        try:
            chunk = self.process.stdout.read() or ""
        except TypeError:  # a non-blocking text read finding nothing at all yet (CPython bug)
            chunk = ""
        self.lines += chunk.splitlines()
        return self.lines

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.read()):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} not logged; log:\n" + "\n".join(self.read()))

    def terminate(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM; the exit code and how long it took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.read()
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process.stdout.close()

    def events(self) -> list[tuple[str, str, float]]:
        """(kind, value, clip time) of every mood and presence change logged in a file."""
        found = []
        for line in self.lines:
            if match := MOOD_LINE.search(line):
                found.append(("mood", match.group(2), float(match.group(3))))
            elif match := PRESENCE_LINE.search(line):
                found.append(("presence", match.group(1), float(match.group(2))))
        return found

    def player_calls(self) -> list[str]:
        return [m.group(2) or "pause" for line in self.lines if (m := PLAYER_LINE.search(line))]
