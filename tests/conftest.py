"""Shared fixtures: the data set, free ports, and a real mosquitto broker."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from training import EMOTIONS

REPO = Path(__file__).resolve().parent.parent
FER2013 = REPO.parent / "shared/datasets/fer2013"
REAL_HOME = Path(os.environ.get("HOME") or Path.home())
"""The home of whoever runs the tests, before `isolated_home` replaces it: never written."""

# Fixture modules of each area; add yours here.
pytest_plugins: list[str] = ["tests.fake_spotify", "tests.web_site", "tests.web_browser"]


def home_environment(home: Path, cache: Path | None = None) -> dict[str, str]:
    """HOME and every XDG base directory inside `home` (the cache in `cache` if given)."""
    runtime = home / ".run"
    for folder in (home, runtime):
        folder.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(cache or home / ".cache"),
        "XDG_RUNTIME_DIR": str(runtime),
    }


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the whole run (font caches and the like), inside pytest's tmp."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test, and every process it starts, gets its own HOME and XDG folders in pytest's
    tmp: a default config or state folder (`~/.config/moodmelody`, `~/.local/state/...`)
    never reaches the real home, where a later `make run` would pick it up."""
    home = tmp_path_factory.mktemp("home")
    for name, value in home_environment(home, shared_cache).items():
        monkeypatch.setenv(name, value)
    # training.data caches decoded faces in ~/.cache/moodmelody: one cache for the whole run
    monkeypatch.setenv("MOODMELODY_CACHE", str(shared_cache / "moodmelody"))
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="session")
def fer2013() -> Path:
    if not (FER2013 / "test").is_dir():
        pytest.fail(f"the FER2013 data set is missing at {FER2013} (see shared/datasets/README.md)")
    return FER2013


@dataclass
class Broker:
    """A mosquitto process on a loopback port; `restart()` keeps the port."""

    port: int
    config: Path
    binary: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed: `make test` installs it with apt-get")
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = Broker(port=port, config=config, binary=binary)
    broker.start()
    yield broker
    broker.stop()


PER_CLASS = {"train": 40, "test": 6}


def fer_faces(split: str, emotion: str, count: int, seed: int) -> list[np.ndarray]:
    """Real FER2013 faces when the shared copy is there, else seeded noise."""
    folder = FER2013 / split / emotion
    if folder.is_dir():
        files = sorted(folder.iterdir())[:count]
        return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 48), np.uint8) for _ in range(count)]


@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small Kaggle-layout dataset and a fer2013.csv holding the same decoded pixels."""
    monkeypatch.setenv("MOODMELODY_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "fer"
    rows = []
    for split, usage in (("train", "Training"), ("test", "PublicTest")):
        for label, emotion in enumerate(EMOTIONS):
            folder = root / split / emotion
            folder.mkdir(parents=True)
            for i, image in enumerate(fer_faces(split, emotion, PER_CLASS[split], label)):
                path = folder / f"{usage}_{i:05d}.jpg"
                cv2.imwrite(str(path), image)
                decoded = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                rows.append((label, " ".join(map(str, decoded.ravel())), usage))
    with (root / "fer2013.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        writer.writerows(rows)
    return root
