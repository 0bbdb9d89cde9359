"""Faults the appliance must survive with nothing lost (the daemon-level ones are in
test_daemon.py and test_end_to_end.py; Spotify's in test_spotify_player.py; the broker's
in test_mqtt.py)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.config import Config, apply_changes, load_config, save_config
from device.player import Intent
from device.spotify import Backoff, SpotifyPlayer
from device.spotify_auth import TOKEN_FILE, LinkError, SpotifyAuth
from device.status import StatusBoard
from device.worker import PlayerWorker
from tests.fake_spotify import FakeSpotify, config_for, link
from tests.waiting import wait_until


def kill_while_writing(script: str, argument: Path, after_s: float) -> None:
    """Run `script` until it says it has started, let it write for `after_s`, SIGKILL it."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(argument)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "writing"
    time.sleep(after_s)
    process.send_signal(signal.SIGKILL)
    process.wait(5)
    process.stdout.close()


WRITER = """
import sys
from device.config import Config, apply_changes, save_config
path = sys.argv[1]
i = 0
print("writing", flush=True)
while True:
    i += 1
    config = apply_changes(Config(), {"mqtt": {"host": f"broker{i}.lan",
                                               "password": "x" * (i % 5000)}})
    save_config(config, path)
"""


def test_sigkill_mid_write_leaves_the_old_or_the_new_file_never_a_torn_one(tmp_path: Path) -> None:
    """The page saves settings while systemd may SIGKILL us: the file must always parse."""
    path = tmp_path / "config.toml"
    save_config(apply_changes(Config(), {"mqtt": {"host": "broker0.lan"}}), path)
    for attempt in range(15):
        kill_while_writing(WRITER, path, 0.05 + attempt * 0.013)
        config = load_config(path)  # raises if torn
        assert config.mqtt.host.startswith("broker")
        assert config.mqtt.password == "x" * len(config.mqtt.password)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "config.toml"]
    # A kill between creating and renaming the temporary file can leave it behind; it is
    # never read (a dot-file with .tmp), and the next save of the same name still works.
    assert all(name.startswith(".config.toml.") and name.endswith(".tmp") for name in leftovers)


REFRESHER = """
import sys
from pathlib import Path
from device.config import load_config
from device.spotify_auth import SpotifyAuth
config = load_config(sys.argv[1])
auth = SpotifyAuth(config, config.state_dir())
print("writing", flush=True)
while True:
    auth.access_token()
"""


def test_sigkill_mid_token_refresh_never_tears_the_token_file(
    tmp_path: Path, fake_spotify: FakeSpotify
) -> None:
    """Killed while saving a refreshed token, the device still has a whole token file: it
    works, or, if the kill fell between Spotify rotating the refresh token and our save
    (Spotify has then retired the one we kept), it says "log in again"; it never crashes
    on a half-written file. Refreshing flat out, as here, makes that window most of the
    time; the device refreshes once an hour."""
    fake_spotify.token_lifetime_s = 30  # inside the expiry margin: every call refreshes
    config = config_for(fake_spotify, tmp_path / "state")
    link(fake_spotify, config)
    config_path = tmp_path / "config.toml"
    save_config(config, config_path)
    token_file = tmp_path / "state" / TOKEN_FILE
    outcomes = []
    for attempt in range(8):
        kill_while_writing(REFRESHER, config_path, 0.1 + attempt * 0.037)
        tokens = json.loads(token_file.read_text())  # whole: parses, with every field
        assert {"access_token", "refresh_token", "expires_at", "consent_at"} <= set(tokens)
        try:
            SpotifyAuth(config, tmp_path / "state").access_token()
            outcomes.append("works")
        except LinkError:
            outcomes.append("log in again")
            link(fake_spotify, config)
    print(
        f"\nafter SIGKILL mid-refresh: {outcomes.count('works')} still linked, "
        f"{outcomes.count('log in again')} asked to log in again, 0 torn files"
    )


def test_after_a_restart_what_we_started_is_not_restarted(
    tmp_path: Path, fake_spotify: FakeSpotify
) -> None:
    """The daemon comes back (crash, SIGKILL, upgrade) while its playlist still plays: the
    same mood must not jump back to the playlist's start."""
    fake_spotify.add_device("Living Room")
    happy = fake_spotify.add_playlist("Happy songs")
    config = config_for(
        fake_spotify,
        tmp_path / "state",
        spotify={"device_name": "Living Room"},
        playlists={"happy": happy},
    )
    link(fake_spotify, config)
    intent = Intent(play=True, mood="happy", context_uri=happy, reason="happy held 8 s")
    before = SpotifyPlayer(config, StatusBoard(), tmp_path / "state")
    before.apply(intent)
    before.close()  # the process dies here
    plays = len(fake_spotify.calls("PUT", "/v1/me/player/play"))
    assert plays == 1 and fake_spotify.playback.context_uri == happy
    after = SpotifyPlayer(config, StatusBoard(), tmp_path / "state")
    after.apply(intent)
    after.close()
    assert len(fake_spotify.calls("PUT", "/v1/me/player/play")) == plays
    assert fake_spotify.playback.is_playing


def test_an_outage_is_ridden_out_by_the_worker_with_capped_backoff(
    tmp_path: Path, fake_spotify: FakeSpotify, caplog: pytest.LogCaptureFixture
) -> None:
    """The network goes away for a while (a minute on the device; 3 s here, with the
    backoff scaled down alike): the worker keeps retrying at growing, capped intervals, the
    status says Spotify is unreachable, and the mood's playlist plays once it is back."""
    fake_spotify.add_device("Living Room")
    happy = fake_spotify.add_playlist("Happy songs")
    config = config_for(fake_spotify, tmp_path / "state", spotify={"device_name": "Living Room"})
    link(fake_spotify, config)
    status = StatusBoard()
    player = SpotifyPlayer(
        config,
        status,
        tmp_path / "state",
        backoff=Backoff(base=0.05, cap=0.5),
        rng=random.Random(2),
    )
    worker = PlayerWorker(player, status)
    worker.start()
    try:
        fake_spotify.network_down()
        worker.want(Intent(play=True, mood="happy", context_uri=happy, reason="test"))
        wait_until(lambda: status.get("spotify_state") == "unreachable", "unreachable", timeout=5)
        time.sleep(3.0)
        fake_spotify.network_up()
        wait_until(lambda: fake_spotify.playback.context_uri == happy, "the playlist", timeout=5)
        wait_until(lambda: status.get("player_state") == "playing", "the status", timeout=5)
    finally:
        worker.stop()
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert 4 <= len(retries) <= 20, len(retries)  # neither a hot loop nor giving up
