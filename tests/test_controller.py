"""The Controller's run-time overlay: `run --source` holds for this run, and is never saved."""

from __future__ import annotations

import signal
import time
import tomllib
from pathlib import Path

import cv2
import numpy as np

from device.config import Config, apply_changes, save_config
from device.controller import Controller
from device.status import StatusBoard
from tests.daemon_process import DaemonProcess, write_config


def overlaid_controller(tmp_path: Path) -> Controller:
    config = apply_changes(Config(), {"camera": {"source": "/dev/video0"}})
    path = tmp_path / "config.toml"
    save_config(config, path)
    return Controller(config, path, StatusBoard(), {"camera": {"source": "clip.mp4"}})


def test_a_run_time_source_is_used_but_never_saved(tmp_path: Path) -> None:
    """One camera toggle on the page once wrote `--source clip.mp4` into the file, so every
    later plain `make run` replayed the clip."""
    controller = overlaid_controller(tmp_path)
    assert controller.config.camera.source == "clip.mp4"
    controller.set_camera(False, "setup page")
    saved = tomllib.loads(controller.config_path.read_text())
    assert saved["camera"] == {**saved["camera"], "source": "/dev/video0", "enabled": False}
    assert controller.config.camera.source == "clip.mp4"
    assert controller.config.camera.enabled is False


def test_a_reload_keeps_the_run_time_source(tmp_path: Path) -> None:
    controller = overlaid_controller(tmp_path)
    seen: list[tuple[str, str]] = []
    controller.on_config_change(
        lambda old, new: seen.append((old.camera.source, new.camera.source))
    )
    text = controller.config_path.read_text().replace("fps = 5.0", "fps = 2.0")
    controller.config_path.write_text(text)
    controller.reload()
    assert controller.config.camera.source == "clip.mp4"
    assert controller.config.camera.fps == 2.0
    assert seen == [("clip.mp4", "clip.mp4")]


def test_sighup_keeps_run_source(tmp_path: Path) -> None:
    """`moodmelody run --source` wires the overlay: a SIGHUP must not switch to the file's
    camera."""
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((120, 160, 3), 90, np.uint8))
    config = write_config(tmp_path / "config.toml", tmp_path / "state", Path("/dev/video-absent"))
    daemon = DaemonProcess.start(config, "--source", str(folder), "--loop")
    try:
        daemon.wait_for(f"camera: using images {folder}")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for("configuration reloaded")
        time.sleep(1.0)
        assert not any("video-absent" in line for line in daemon.read()), "\n".join(daemon.lines)
        assert daemon.terminate()[0] == 0
    finally:
        daemon.kill()
