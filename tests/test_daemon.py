"""The daemon as a process: replayed clips, sd_notify, signals, a missing camera, bad config."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.config import Config, apply_changes
from device.controller import Controller
from device.daemon import Daemon
from device.pipeline import Analyser
from device.player import DryRunPlayer
from device.status import StatusBoard
from tests.daemon_process import (
    DaemonProcess,
    build_clip,
    confident_faces,
    run_cli,
    write_config,
)
from tests.frames import face_frame, read_gray
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

# happy 5 s, sad 6 s, nobody 4 s, angry 5 s, at 10 fps; settings in write_config:
# dwell 1.5 s, minimum interval 4 s, absence after 2 s.
SEGMENTS = [("happy", 5.0), ("sad", 6.0), (None, 4.0), ("angry", 5.0)]


@pytest.fixture(scope="module")
def clip(fer2013: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_clip(tmp_path_factory.mktemp("clip") / "moods.avi", fer2013, SEGMENTS, fps=10)


@pytest.fixture
def daemon_factory(tmp_path: Path):
    started: list[DaemonProcess] = []

    def start(config: Path, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess.start(config, *args, env=env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def test_replayed_clip_gives_the_exact_sequence_of_events(
    clip: Path, tmp_path: Path, daemon_factory
) -> None:
    """Faces → mood → player, with the configured debounce, end to end in one process."""
    config = write_config(tmp_path / "config.toml", tmp_path / "state", clip)
    daemon = daemon_factory(config, "--fast")
    daemon.wait_for("ended")
    code, _ = daemon.terminate()
    assert code == 0
    events = daemon.events()
    kinds = [(kind, value) for kind, value, _ in events]
    assert kinds == [
        ("presence", "someone there"),
        ("mood", "happy"),
        ("mood", "sad"),
        ("presence", "nobody there"),
        ("presence", "someone there"),
        ("mood", "angry"),
    ], "\n".join(daemon.lines)
    times = [at for _, _, at in events]
    assert times[0] == 0.0
    assert 1.5 <= times[1] <= 2.0  # dwell after the first confident face
    assert 6.5 <= times[2] <= 8.0  # sad from 5.0 s: dwell and 4 s after happy
    assert times[3] == pytest.approx(10.9 + 2.0, abs=0.05)  # last face at 10.9 s, +2 s
    assert times[4] == pytest.approx(15.0, abs=0.05)
    assert 16.5 <= times[5] <= 17.5
    calls = daemon.player_calls()
    assert calls[:3] == ["happy", "sad", "pause"] and calls[-1] == "angry"


@contextlib.contextmanager
def watchdog_status(
    tmp_path: Path,
) -> Iterator[tuple[dict[str, str], Callable[[Callable[[str], bool]], str]]]:
    """A datagram socket in systemd's place, pinged every 0.5 s: the daemon's environment,
    and a function that returns the first status line that passes a test (10 s at most)."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)

        def until(wanted: Callable[[str], bool]) -> str:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                line = sock.recv(4096).decode()
                if wanted(line):
                    return line
            raise AssertionError(f"no such status line; the last: {line}")

        yield {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}, until


def test_when_frames_stop_presence_ends_on_the_clock(
    fer2013: Path, tmp_path: Path, daemon_factory
) -> None:
    """70 s after a file ended (or the camera was switched off or unplugged) the status still
    said someone was there, happy, at 5 fps, and the music played on "for someone". No
    frames means nobody seen: after the absence time (2 s here) presence ends and the player
    pauses, and the status says why."""
    clip = build_clip(tmp_path / "happy.avi", fer2013, [("happy", 3.0)], fps=10)
    config = write_config(tmp_path / "config.toml", tmp_path / "state", clip)
    with watchdog_status(tmp_path) as (env, status_until):
        daemon = daemon_factory(config, env=env)
        daemon.wait_for("presence changed: someone there")
        daemon.wait_for("ended", timeout=20)
        ended = time.monotonic()
        daemon.wait_for("presence changed: nobody there", timeout=10)
        daemon.wait_for("dry-run player: pause", timeout=5)
        assert time.monotonic() - ended < 6.0
        line = status_until(lambda text: "0.0 fps" in text and "nobody there (" in text)
    assert "nobody there (no camera frames for" in line and "end of the file" in line, line
    assert daemon.terminate()[0] == 0


def test_logs_give_the_place_in_the_clip_and_words_for_no_mood(
    fer2013: Path, tmp_path: Path, daemon_factory
) -> None:
    """Played in real time, a clip's events were stamped with the machine's uptime
    (`t=1563.1 s` a second into the clip) and the first mood came from Python's `None`."""
    clip = build_clip(tmp_path / "happy.avi", fer2013, [("happy", 3.0)], fps=10)
    config = write_config(tmp_path / "config.toml", tmp_path / "state", clip)
    daemon = daemon_factory(config)
    daemon.wait_for("mood changed: no mood yet -> happy at clip ")
    assert daemon.terminate()[0] == 0
    presence, mood, *_ = daemon.events()
    assert presence[:2] == ("presence", "someone there") and presence[2] < 0.5
    assert mood[:2] == ("mood", "happy") and 1.5 <= mood[2] <= 3.0


def test_detect_gives_the_place_in_a_file(fer2013: Path, tmp_path: Path) -> None:
    clip = build_clip(tmp_path / "happy.avi", fer2013, [("happy", 1.0)], fps=10)
    result = run_cli("detect", "--frames", "3", str(clip))
    times = [line.split()[0] for line in result.stdout.splitlines()]
    assert times == ["0.000s", "0.100s", "0.200s"], result.stdout


def test_sd_notify_ready_watchdog_status_and_clean_sigterm(
    clip: Path, tmp_path: Path, daemon_factory
) -> None:
    """What systemd's Type=notify and WatchdogSec= rely on, over a real datagram socket."""
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        sock.settimeout(30)
        config = write_config(tmp_path / "config.toml", tmp_path / "state", clip)
        daemon = daemon_factory(
            config, "--loop", env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"}
        )
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1\nSTATUS=")
        pings = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            pings.append(sock.recv(4096).decode())
        watchdogs = [p for p in pings if p.startswith("WATCHDOG=1")]
        assert len(watchdogs) >= 8  # every 0.2 s for 3 s
        assert any("someone there" in p for p in watchdogs)
        code, took = daemon.terminate()
        messages = []
        sock.settimeout(1)
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    assert code == 0 and took < 5.0
    assert "STOPPING=1" in messages


def test_a_missing_camera_is_a_clear_message_not_a_crash(tmp_path: Path, daemon_factory) -> None:
    config = write_config(tmp_path / "config.toml", tmp_path / "state", Path("/dev/video-absent"))
    daemon = daemon_factory(config)
    daemon.wait_for("camera: /dev/video-absent: no such device or file; retrying in")
    daemon.wait_for("running: mood none yet, nobody there, 0.0 fps, camera unavailable")
    time.sleep(1.5)
    assert daemon.process.poll() is None
    assert not any("Traceback" in line for line in daemon.read())
    assert daemon.terminate()[0] == 0


def test_with_the_camera_off_ready_and_shutdown_are_prompt(tmp_path: Path, daemon_factory) -> None:
    """A privacy-switched camera is never "tried", and the start-up once waited 10 s for that
    try, deaf to SIGINT: READY came 10 s late and Ctrl-C took 6.8 s (the README says 5)."""
    config = write_config(tmp_path / "config.toml", tmp_path / "state", Path("/dev/video-absent"))
    config.write_text(config.read_text().replace("fps = 10.0", "fps = 10.0\nenabled = false"))
    first = daemon_factory(config)
    first.wait_for("models loaded")
    started = time.monotonic()
    first.wait_for("running: ", timeout=10)
    assert time.monotonic() - started < 3.0, "\n".join(first.lines)
    assert first.terminate()[0] == 0
    second = daemon_factory(config)
    second.wait_for("models loaded")
    started = time.monotonic()
    second.process.send_signal(signal.SIGINT)
    assert second.process.wait(10) == 0
    assert time.monotonic() - started < 3.0


def test_a_camera_missing_from_the_start_is_why_nobody_is_seen(
    tmp_path: Path, daemon_factory
) -> None:
    config = write_config(tmp_path / "config.toml", tmp_path / "state", Path("/dev/video-absent"))
    with watchdog_status(tmp_path) as (env, status_until):
        daemon = daemon_factory(config, env=env)
        line = status_until(lambda text: "nobody there (" in text)
    assert "nobody there (no camera frames for" in line, line
    assert "/dev/video-absent: no such device or file" in line, line
    assert daemon.terminate()[0] == 0


def test_a_corrupt_config_waits_for_a_fix_then_runs(tmp_path: Path, daemon_factory) -> None:
    """A typo must not crash-loop the service: it says what is wrong and waits."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[camera]\nfps = "fast"\n[web]\nenabled = false\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
    )
    daemon = daemon_factory(config, env={"HOME": str(tmp_path)})
    daemon.wait_for(f"{config}: camera.fps: 'fast' is not valid (allowed: a number from 0.1")
    daemon.wait_for("waiting for")
    config.write_text(config.read_text().replace('"fast"', "2.0"))
    daemon.wait_for("running: ", timeout=20)
    assert daemon.terminate()[0] == 0


def test_a_corrupt_config_falls_back_to_the_last_good_one(tmp_path: Path, daemon_factory) -> None:
    config = write_config(tmp_path / "config.toml", tmp_path / "state", Path("/dev/video-absent"))
    first = daemon_factory(config)
    first.wait_for("running: ")
    first.terminate()
    assert (tmp_path / "config.last-good.toml").exists(), "kept beside the config"
    config.write_text(config.read_text().replace("fps = 10.0", "fps = -1"))
    second = daemon_factory(config)
    second.wait_for("running with the last good configuration")
    second.wait_for("running: ")
    assert second.terminate()[0] == 0


def test_each_config_has_its_own_last_good_one(tmp_path: Path, daemon_factory) -> None:
    """Two daemons on one machine (or the test suite and the user) sharing a HOME must not
    share a fallback: a typo in B's file must never run B with A's settings."""
    home = {"HOME": str(tmp_path / "home")}  # the same home for both, as on one machine
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_config(tmp_path / "a/config.toml", tmp_path / "a/state", Path("/dev/video-a"))
    first = daemon_factory(a, env=home)
    first.wait_for("running: ")
    first.terminate()
    b = tmp_path / "b/config.toml"
    b.write_text('[camera]\nfps = "fast"\n[web]\nenabled = false\n')
    second = daemon_factory(b, env=home)
    second.wait_for("waiting for")
    assert not any("last good" in line for line in second.read()), "\n".join(second.lines)


def test_a_daemon_under_test_writes_nothing_outside_its_tmp_folder(
    tmp_path: Path, daemon_factory
) -> None:
    """The test suite once left its config as the user's "last good" one, so a later `make run`
    with a typo replayed a pytest clip. A daemon with no [paths] state_dir, no --config default
    and the setup page on must keep everything (state, certificate, fallback) under tmp_path."""
    from tests.conftest import REAL_HOME, free_port

    started = time.time()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[camera]\nsource = "/dev/video-absent"\n[web]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[spotify]\ncallback_listen = "127.0.0.1:{free_port()}"\n'
    )
    daemon = daemon_factory(config)
    daemon.wait_for("running: ")
    assert daemon.terminate()[0] == 0
    state = next(
        line.split("state in ", 1)[1].strip() for line in daemon.lines if "state in " in line
    )
    assert Path(state).resolve().is_relative_to(tmp_path.resolve()), state
    assert (Path(state) / "callback_cert.pem").exists()
    for folder in (".local/state/moodmelody", ".config/moodmelody"):
        real = REAL_HOME / folder
        touched = [p for p in real.rglob("*") if p.stat().st_mtime >= started]
        assert not touched, f"written in the real home: {touched}"


def happy_frames(fer2013: Path) -> list[np.ndarray]:
    """One confidently happy face, large in the middle, then small at (160, 120): the first
    that the pipeline finds at both sizes (its recall is measured in test_detector.py)."""
    analyser = Analyser.from_config(Config())
    for path in confident_faces(fer2013, "happy"):
        face = read_gray(path)
        frames = [face_frame(face), face_frame(face, face_px=120, centre=(160, 120))]
        if all(analyser.analyse(frame) for frame in frames):
            return frames
    pytest.fail("no confident happy face is found at both sizes")


def test_detect_prints_faces_and_emotions_as_json(fer2013: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(happy_frames(fer2013)):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    result = run_cli("detect", "--json", "--fast", str(folder))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["frame"] for r in records] == [1, 2]
    for record, (cx, cy) in zip(records, [(320, 240), (160, 120)], strict=True):
        (face,) = record["faces"]
        x, y, w, h = face["box"]
        assert abs(x + w / 2 - cx) < 40 and abs(y + h / 2 - cy) < 50
        assert face["emotion"] == "happy"
        assert set(face["scores"]) == {
            "angry",
            "disgust",
            "fear",
            "happy",
            "sad",
            "surprise",
            "neutral",
        }


def test_sighup_reloads_and_a_bad_edit_keeps_the_running_config(
    tmp_path: Path, daemon_factory
) -> None:
    """`systemctl reload` after a hand edit: a good edit applies, a bad one is refused with
    the reason and the daemon keeps running on what it had."""
    config = write_config(tmp_path / "config.toml", tmp_path / "state", Path("/dev/video-absent"))
    daemon = daemon_factory(config)
    daemon.wait_for("running: ")
    config.write_text(config.read_text().replace("dwell_s = 1.5", "dwell_s = 2.5"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for(f"configuration reloaded from {config}")
    config.write_text(config.read_text().replace("dwell_s = 2.5", "dwell_s = -3"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for(
        "reload refused, keeping the running configuration: "
        f"{config}: mood.dwell_s: -3.0 is out of range"
    )
    assert daemon.process.poll() is None
    assert daemon.terminate()[0] == 0


class ButtonRecorder(DryRunPlayer):
    """A dry-run player that notes the buttons it got."""

    def __init__(self, status: StatusBoard) -> None:
        super().__init__(status)
        self.pressed: list[str] = []

    def pause(self) -> None:
        self.pressed.append("pause")

    def resume(self) -> None:
        self.pressed.append("resume")


def test_player_buttons_reach_whichever_player_is_current(tmp_path: Path) -> None:
    """Pause and Play (page or Home Assistant) run on the worker, on the player of the moment
    (a settings change replaces it)."""
    config = apply_changes(
        Config(), {"web": {"enabled": False}, "paths": {"state_dir": str(tmp_path)}}
    )
    daemon = Daemon(Controller(config, tmp_path / "config.toml", StatusBoard()))
    first, second = ButtonRecorder(daemon.status), ButtonRecorder(daemon.status)
    daemon.worker.replace_player(first)
    daemon.worker.start()
    try:
        daemon.controller.pause()
        wait_until(lambda: first.pressed == ["pause"], "the pause")
        daemon.worker.replace_player(second)
        daemon.controller.play()
        wait_until(lambda: second.pressed == ["resume"], "the play")
        assert first.pressed == ["pause"]
    finally:
        daemon.worker.stop()
