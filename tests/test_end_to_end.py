"""The whole appliance at once: the real daemon process on a replayed clip, the Spotify
stand-in, and a real mosquitto broker, with the configured debounce timings."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import save_config
from tests.conftest import Broker
from tests.daemon_process import DaemonProcess, build_clip
from tests.fake_spotify import FakeSpotify, config_for, link
from tests.mqtt_recorder import Recorder
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

# happy 5 s, sad 6 s, nobody 4 s, angry 5 s, then nobody: replayed in real time.
SEGMENTS = [("happy", 5.0), ("sad", 6.0), (None, 4.0), ("angry", 5.0), (None, 3.0)]
MOOD_TIMINGS = {
    "time_constant_s": 0.5,
    "threshold": 0.4,
    "dwell_s": 1.5,
    "min_switch_interval_s": 4.0,
    "absent_after_s": 2.0,
}


def test_moods_play_on_the_speaker_and_reach_home_assistant(
    fer2013: Path, tmp_path: Path, fake_spotify: FakeSpotify, mosquitto: Broker
) -> None:
    speaker = fake_spotify.add_device("Living Room")
    fake_spotify.add_device("Kitchen")
    playlists = {
        mood: fake_spotify.add_playlist(f"{mood} songs") for mood in ("happy", "sad", "angry")
    }
    clip = build_clip(tmp_path / "moods.avi", fer2013, SEGMENTS, fps=10)
    config = config_for(
        fake_spotify,
        tmp_path / "state",
        camera={"source": str(clip), "fps": 10.0},
        mood=MOOD_TIMINGS,
        spotify={"device_name": "Living Room"},
        playlists=playlists,
        mqtt={
            "enabled": True,
            "host": "127.0.0.1",
            "port": mosquitto.port,
            "base_topic": "mm/test",
        },
        web={"enabled": False},
    )
    link(fake_spotify, config)
    config_path = tmp_path / "config.toml"
    save_config(config, config_path)
    recorder = Recorder(mosquitto, "mm/test/#")
    daemon = DaemonProcess.start(config_path)
    try:
        daemon.wait_for("ended", timeout=60)
        wait_until(
            lambda: (
                fake_spotify.calls("PUT", "/v1/me/player/pause")
                and len(fake_spotify.calls("PUT", "/v1/me/player/pause")) >= 2
            ),
            timeout=10,
            what="the pause after the last face",
        )
        assert daemon.terminate()[0] == 0
    finally:
        daemon.kill()
        recorder.close()

    # Spotify: the right context on the right device, pause when nobody, resume on return.
    playback = [
        (r.path.rsplit("/", 1)[-1], (r.body or {}).get("context_uri"), r.query.get("device_id"))
        for r in fake_spotify.requests
        if r.method == "PUT" and r.path in ("/v1/me/player/play", "/v1/me/player/pause")
    ]
    log = "\n".join(daemon.lines)
    assert [(what, ctx) for what, ctx, _ in playback] == [
        ("play", playlists["happy"]),
        ("play", playlists["sad"]),
        ("pause", None),
        ("play", None),
        ("play", playlists["angry"]),
        ("pause", None),
    ], log
    assert all(device == speaker.id for what, _, device in playback if what == "play")
    assert [kind for kind, *_ in daemon.events()] == [
        "presence",
        "mood",
        "mood",
        "presence",
        "presence",
        "mood",
        "presence",
    ]

    # Home Assistant sees the same story, retained where it should be.
    assert recorder.values("mm/test/availability")[:1] == ["online"]
    assert recorder.values("mm/test/mood") == ["none", "happy", "sad", "angry"]
    assert recorder.values("mm/test/presence") == ["OFF", "ON", "OFF", "ON", "OFF"]
    assert recorder.values("mm/test/availability")[-1] == "offline"
