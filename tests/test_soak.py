"""Soak with an accelerated clock: days of a simulated household through the daemon's
mood-to-player path in seconds. Memory, threads and descriptors stay flat; playlist
switches stay within the debounce bounds. (The real-time soak is `make soak`.)"""

from __future__ import annotations

import itertools
import logging
import os
import resource
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from device import EMOTIONS
from device.config import Config, apply_changes
from device.controller import Controller
from device.daemon import Daemon
from device.status import StatusBoard

pytestmark = pytest.mark.slow

DAYS = 2
FPS = 1.0
MOOD = {
    "time_constant_s": 2.0,
    "threshold": 0.45,
    "dwell_s": 8.0,
    "min_switch_interval_s": 120.0,
    "absent_after_s": 60.0,
}


def household(rng: np.random.Generator, seconds: float):
    """(time, probabilities or None): stretches of presence with moods that change every
    few minutes, brief flickers, a model that is wrong a fifth of the time, and absences
    from minutes to a night."""
    now = 0.0
    while now < seconds:
        for _ in range(int(rng.integers(2, 12))):  # one stretch of presence
            emotion = int(rng.integers(len(EMOTIONS)))
            end = now + float(rng.uniform(20, 1200))
            while now < end:
                probs = rng.dirichlet(np.ones(len(EMOTIONS)) * 0.5)
                shown = emotion if rng.random() > 0.2 else int(rng.integers(len(EMOTIONS)))
                if rng.random() < 0.01:  # a flicker of another expression, a few seconds
                    shown = int(rng.integers(len(EMOTIONS)))
                probs = 0.35 * probs + 0.65 * np.eye(len(EMOTIONS))[shown]
                yield now, probs if rng.random() > 0.05 else None  # detector misses
                now += 1 / FPS
        absence_end = now + float(rng.choice([rng.uniform(30, 600), rng.uniform(3600, 30000)]))
        while now < absence_end:
            yield now, None
            now += 1 / FPS


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.plays = self.pauses = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.plays += text.startswith("dry-run player: play")
        self.pauses += text.startswith("dry-run player: pause")


def resident_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
        / 1024
    )


def test_days_of_moods_and_absences(tmp_path: Path) -> None:
    config = apply_changes(
        Config(), {"mood": MOOD, "web": {"enabled": False}, "paths": {"state_dir": str(tmp_path)}}
    )
    daemon = Daemon(Controller(config, tmp_path / "config.toml", StatusBoard()))
    assert daemon.load_models()
    counter = Counter()
    player_log = logging.getLogger("device.player")
    player_log.addHandler(counter)
    player_log.setLevel(logging.INFO)
    daemon.worker.start()
    clock = [0.0]
    changes: list[float] = []  # simulated times of the mood changes the status announced

    def on_status(changed: dict) -> None:
        if "mood" in changed:
            changes.append(clock[0])

    daemon.status.subscribe(on_status)
    seconds = DAYS * 86400
    started = time.monotonic()
    baseline = None
    try:
        for now, probs in household(np.random.default_rng(11), seconds):
            clock[0] = now
            daemon.follow(now, probs, 0 if probs is None else 1)
            if baseline is None and now >= 3600:  # after a warm-up hour
                baseline = (
                    resident_mb(),
                    threading.active_count(),
                    len(os.listdir("/proc/self/fd")),
                )
        after = (resident_mb(), threading.active_count(), len(os.listdir("/proc/self/fd")))
    finally:
        daemon.worker.stop()
        player_log.removeHandler(counter)
    wall = time.monotonic() - started
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{DAYS} simulated days ({seconds * FPS:.0f} frames) in {wall:.1f} s: "
        f"{len(changes)} mood changes, closest {min(gaps):.0f} s apart, "
        f"{counter.plays} play and {counter.pauses} pause calls; "
        f"RSS {baseline[0]:.1f} → {after[0]:.1f} MB (peak {peak:.0f} MB), "
        f"threads {baseline[1]} → "
        f"{after[1]}, fds {baseline[2]} → {after[2]}"
    )
    assert len(changes) >= 20  # the household did change moods
    assert min(gaps) >= MOOD["min_switch_interval_s"]
    assert len(changes) <= seconds / MOOD["min_switch_interval_s"]
    assert after[0] - baseline[0] < 5.0
    assert after[1] <= baseline[1] and after[2] <= baseline[2]
