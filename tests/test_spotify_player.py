"""Spotify playback: the real spotipy client against the fake Web API.

Covers the behaviour (play, pause, resume, never interrupt, quiet hours, volume,
speaker by name), every failure the issue lists, the worker's newest-intent rule, and
the setup page's helpers and `check`.
"""

from __future__ import annotations

import json
import random
import stat
import time
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pytest

from device.config import Config
from device.player import Intent, PlayerError
from device.schedule import quiet_hours_left, scheduled_volume
from device.spotify import (
    STATE_FILE,
    Backoff,
    SpotifyPlayer,
    SpotifyService,
    SpotifyServiceError,
    check,
    link_label,
    parse_spotify_link,
)
from device.spotify_auth import TOKEN_FILE, Account
from device.status import StatusBoard
from device.worker import PlayerWorker
from tests.fake_spotify import Device, FakeSpotify, config_for, link
from tests.waiting import wait_until

NOON = datetime(2026, 11, 22, 12, 0)


@pytest.fixture
def speaker(fake_spotify: FakeSpotify) -> Device:
    return fake_spotify.add_device("Kitchen")


def _config(fake: FakeSpotify, tmp_path: Path, **player: Any) -> Config:
    config = config_for(fake, tmp_path, spotify={"device_name": "Kitchen"}, player=player)
    link(fake, config)
    return config


def _player(
    config: Config, status: StatusBoard | None = None, now: datetime = NOON
) -> SpotifyPlayer:
    return SpotifyPlayer(
        config,
        status or StatusBoard(),
        config.state_dir(),
        now=lambda: now,
        backoff=Backoff(base=0.05, cap=0.4),
        rng=random.Random(1),
    )


def _plays(fake: FakeSpotify) -> list[Any]:
    return [r.body for r in fake.calls("PUT", "/v1/me/player/play")]


def test_a_mood_starts_its_playlist_shuffled_on_the_speaker(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """Play goes to the named speaker's id with the mood's context, at a random offset,
    then shuffle on; the status says what plays where; the token file is 0600."""
    uri = fake_spotify.add_playlist("Happy Hour")
    status = StatusBoard()
    _player(_config(fake_spotify, tmp_path), status).apply(Intent(True, "happy", uri, "t"))
    play = fake_spotify.calls("PUT", "/v1/me/player/play")[-1]
    assert play.query["device_id"] == speaker.id and play.body["context_uri"] == uri
    assert 0 <= play.body["offset"]["position"] < 20
    assert fake_spotify.calls("PUT", "/v1/me/player/shuffle")[-1].query["state"] == "true"
    assert fake_spotify.playback.is_playing and fake_spotify.playback.device_id == speaker.id
    assert status.get("now_playing") == {
        "context_uri": uri,
        "name": "Happy Hour",
        "device": "Kitchen",
    }
    assert status.get("player_state") == "playing"
    assert status.get("spotify_state") == "linked as Ann"
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600


def test_without_shuffle_the_playlist_starts_from_its_start(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """shuffle = false: no offset, shuffle turned off."""
    uri = fake_spotify.add_playlist("Calm")
    _player(_config(fake_spotify, tmp_path, shuffle=False)).apply(Intent(True, "sad", uri))
    assert _plays(fake_spotify) == [{"context_uri": uri}]
    assert fake_spotify.calls("PUT", "/v1/me/player/shuffle")[-1].query["state"] == "false"


def test_absence_pauses_and_return_resumes_without_restarting(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """Intent(play=False) pauses our music; the same mood again resumes (a play without a
    context), it does not start the playlist over."""
    uri = fake_spotify.add_playlist("Calm")
    player = _player(_config(fake_spotify, tmp_path))
    player.apply(Intent(True, "neutral", uri))
    player.apply(Intent(False, reason="nobody there"))
    assert not fake_spotify.playback.is_playing
    player.apply(Intent(True, "neutral", uri))
    assert fake_spotify.playback.is_playing
    assert len(_plays(fake_spotify)) == 2 and _plays(fake_spotify)[1] is None


def test_someone_elses_music_is_not_interrupted(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """When the account plays a context we did not start, neither a mood change nor
    absence touches it (a PlayerError says why and to look again later)."""
    mine, theirs = fake_spotify.add_playlist("Mine"), fake_spotify.add_playlist("Theirs")
    player = _player(_config(fake_spotify, tmp_path))
    player.apply(Intent(True, "happy", mine))
    fake_spotify.someone_else_plays(theirs, speaker.id)
    with pytest.raises(PlayerError, match="someone else is playing") as err:
        player.apply(Intent(True, "sad", mine))
    assert err.value.retry_after and err.value.retry_after > 60
    player.apply(Intent(False, reason="nobody there"))
    assert fake_spotify.playback.is_playing and fake_spotify.playback.context_uri == theirs
    assert len(_plays(fake_spotify)) == 1


def test_take_over_switches_anyway(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """player.take_over = true replaces what someone else started."""
    mine, theirs = fake_spotify.add_playlist("Mine"), fake_spotify.add_playlist("Theirs")
    fake_spotify.someone_else_plays(theirs, speaker.id)
    _player(_config(fake_spotify, tmp_path, take_over=True)).apply(Intent(True, "happy", mine))
    assert fake_spotify.playback.context_uri == mine


def test_our_music_paused_on_another_device_is_moved_to_the_speaker(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """If our context is paused elsewhere, playback is transferred, not restarted."""
    phone = fake_spotify.add_device("Phone", type="Smartphone")
    uri = fake_spotify.add_playlist("Calm")
    player = _player(_config(fake_spotify, tmp_path))
    player.apply(Intent(True, "neutral", uri))
    fake_spotify.playback.device_id, fake_spotify.playback.is_playing = phone.id, False
    player.apply(Intent(True, "neutral", uri))
    transfer = fake_spotify.calls("PUT", "/v1/me/player")[-1]
    assert transfer.body == {"device_ids": [speaker.id], "play": True}
    assert fake_spotify.playback.device_id == speaker.id and len(_plays(fake_spotify)) == 1


def test_music_playing_on_another_speaker_is_never_taken_away(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """Our playlist playing on another speaker: someone moved it there, or another Mood Melody
    on the account started it. Neither a mood nor absence takes it away or pauses it."""
    kitchen = fake_spotify.add_device("Kitchen speaker")
    calm, upbeat = fake_spotify.add_playlist("Calm"), fake_spotify.add_playlist("Up")
    player = _player(_config(fake_spotify, tmp_path))
    player.apply(Intent(True, "neutral", calm))
    fake_spotify.playback.device_id = kitchen.id
    for intent in (Intent(True, "neutral", calm), Intent(True, "happy", upbeat)):
        with pytest.raises(PlayerError, match="is playing on Kitchen speaker: not taking it"):
            player.apply(intent)
    player.apply(Intent(False, reason="nobody there"))
    assert fake_spotify.playback.is_playing and fake_spotify.playback.device_id == kitchen.id
    assert len(_plays(fake_spotify)) == 1 and not fake_spotify.calls("PUT", "/v1/me/player")


def test_music_another_mood_melody_hands_over_is_taken(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """The driver of a shared account may take what the others announced they started: the
    same playlist moves to its speaker, another one starts there."""
    kitchen = fake_spotify.add_device("Kitchen speaker")
    theirs, mine = fake_spotify.add_playlist("Theirs"), fake_spotify.add_playlist("Mine")
    player = _player(_config(fake_spotify, tmp_path))
    fake_spotify.someone_else_plays(theirs, kitchen.id)
    with pytest.raises(PlayerError, match="someone else is playing"):
        player.apply(Intent(True, "happy", mine, handover=frozenset({(theirs, "Other")})))
    player.apply(Intent(True, "happy", mine, handover=frozenset({(theirs, "Kitchen speaker")})))
    assert (fake_spotify.playback.context_uri, fake_spotify.playback.device_id) == (
        mine,
        speaker.id,
    )
    fake_spotify.someone_else_plays(theirs, kitchen.id)
    player.apply(Intent(True, "sad", theirs, handover=frozenset({(theirs, "Kitchen speaker")})))
    assert fake_spotify.calls("PUT", "/v1/me/player")[-1].body == {
        "device_ids": [speaker.id],
        "play": True,
    }


def test_the_speaker_is_found_by_name_when_its_id_changed(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """The last id is kept in the state file; when it is gone the name wins and the new id
    is saved."""
    uri = fake_spotify.add_playlist("Calm")
    player = _player(_config(fake_spotify, tmp_path))
    player.apply(Intent(True, "neutral", uri))
    assert json.loads((tmp_path / STATE_FILE).read_text())["device_id"] == speaker.id
    fake_spotify.remove_device(speaker.id)
    reborn = fake_spotify.add_device("kitchen ")
    player.apply(Intent(True, "happy", fake_spotify.add_playlist("Up")))
    assert fake_spotify.calls("PUT", "/v1/me/player/play")[-1].query["device_id"] == reborn.id
    assert json.loads((tmp_path / STATE_FILE).read_text())["device_id"] == reborn.id


def test_quiet_hours_hold_playback_until_they_end(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """At 23:30 with quiet hours 22:00-07:00 nothing plays; retry at 07:00 (7.5 h)."""
    config = _config(fake_spotify, tmp_path, quiet_hours="22:00-07:00")
    player = _player(config, now=datetime(2026, 11, 22, 23, 30))
    with pytest.raises(PlayerError, match="quiet hours until 07:00") as err:
        player.apply(Intent(True, "happy", fake_spotify.add_playlist("Up")))
    assert err.value.retry_after == pytest.approx(7.5 * 3600)
    assert _plays(fake_spotify) == []


@pytest.mark.parametrize(
    "spec, clock, left_min",
    [
        ("22:00-07:00", "23:00", 480),
        ("22:00-07:00", "06:59", 1),
        ("22:00-07:00", "07:00", 0),
        ("22:00-07:00", "12:00", 0),
        ("13:00-14:00", "13:30", 30),
        ("", "03:00", 0),
    ],
)
def test_quiet_hours_rule(spec: str, clock: str, left_min: int) -> None:
    """Ranges may span midnight; the end minute is outside."""
    assert quiet_hours_left(spec, dtime.fromisoformat(clock)) == left_min * 60


@pytest.mark.parametrize(
    "clock, volume", [("06:00", 25), ("07:00", 40), ("18:59", 40), ("19:00", 25), ("23:59", 25)]
)
def test_volume_schedule_rule(clock: str, volume: int) -> None:
    """The latest entry at or before now wins; before the first, yesterday's last."""
    assert scheduled_volume("19:00=25, 07:00=40", dtime.fromisoformat(clock)) == volume
    assert scheduled_volume("", dtime.fromisoformat(clock)) is None


def test_the_scheduled_volume_is_set_on_play(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """At noon with 07:00=40 the speaker is set to 40 %; a speaker refusing volume
    control (403 VOLUME_CONTROL_DISALLOW) still plays."""
    uri = fake_spotify.add_playlist("Up")
    _player(_config(fake_spotify, tmp_path, volume_schedule="07:00=40")).apply(
        Intent(True, "happy", uri)
    )
    assert speaker.volume_percent == 40
    fake_spotify.fail_next(
        "PUT",
        "/v1/me/player/volume",
        403,
        reason="VOLUME_CONTROL_DISALLOW",
        message="Cannot control volume",
    )
    speaker.volume_percent = 10
    _player(_config(fake_spotify, tmp_path, volume_schedule="07:00=40")).apply(
        Intent(True, "sad", fake_spotify.add_playlist("Down"))
    )
    assert fake_spotify.playback.is_playing and speaker.volume_percent == 10


# --- failures -------------------------------------------------------------------------------
def test_an_expired_token_is_refreshed_and_the_call_retried_once(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """A 401 leads to one refresh (POST /api/token) and the same call again, which works."""
    player = _player(_config(fake_spotify, tmp_path))
    fake_spotify.expire_access_tokens()
    player.apply(Intent(True, "happy", fake_spotify.add_playlist("Up")))
    assert len(fake_spotify.calls("POST", "/api/token")) == 2  # login + one refresh
    assert fake_spotify.playback.is_playing


def test_a_second_401_is_reported_and_retried_later(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """If the refreshed token is refused too, the call is not looped: PlayerError with a
    backoff, after exactly one refresh."""
    player = _player(_config(fake_spotify, tmp_path))
    fake_spotify.fail_next("GET", "/v1/me/player/devices", 401, times=2)
    with pytest.raises(PlayerError) as err:
        player.apply(Intent(True, "happy", fake_spotify.add_playlist("Up")))
    assert err.value.retry_after is not None
    assert len(fake_spotify.calls("GET", "/v1/me/player/devices")) == 2


def test_rate_limit_honours_retry_after(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """429 with Retry-After: 7 → retry in 7 s, status "rate limited", no hidden sleep."""
    status = StatusBoard()
    player = _player(_config(fake_spotify, tmp_path), status)
    fake_spotify.fail_next("PUT", "/v1/me/player/play", 429, retry_after=7)
    started = time.monotonic()
    with pytest.raises(PlayerError, match="rate limited") as err:
        player.apply(Intent(True, "happy", fake_spotify.add_playlist("Up")))
    assert err.value.retry_after == 7 and time.monotonic() - started < 5
    assert status.get("spotify_state") == "rate limited"


def test_quota_exceeded_backs_off_for_long(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """429 QUOTA_EXCEEDED (the per-developer quota) waits an hour and says so."""
    status = StatusBoard()
    player = _player(_config(fake_spotify, tmp_path), status)
    fake_spotify.fail_next("GET", "/v1/me/player", 429, retry_after=5, reason="QUOTA_EXCEEDED")
    with pytest.raises(PlayerError, match="quota") as err:
        player.apply(Intent(True, "happy", fake_spotify.add_playlist("Up")))
    assert err.value.retry_after is not None and err.value.retry_after >= 3600
    assert status.get("spotify_state") == "quota exceeded"


def test_premium_required_stops_retrying(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """A free account: 403 PREMIUM_REQUIRED → clear message, retry_after None, and the
    worker does not call again until a new intent."""
    fake_spotify.user["product"] = "free"
    status = StatusBoard()
    worker = PlayerWorker(_player(_config(fake_spotify, tmp_path), status), status)
    worker.start()
    try:
        worker.want(Intent(True, "happy", fake_spotify.add_playlist("Up")))
        wait_until(lambda: status.get("player_state") == "error", what="the error state")
        assert "Premium is required" in status.get("player_detail")
        assert status.get("spotify_state") == "premium required"
        time.sleep(0.5)
        assert len(_plays(fake_spotify)) == 1
    finally:
        worker.stop()


def test_missing_speaker_is_waited_for_and_played_on_when_it_appears(
    fake_spotify: FakeSpotify, tmp_path: Path
) -> None:
    """The speaker asleep: status "speaker unavailable", retries with backoff; when it
    wakes up the worker plays there without a new intent."""
    uri = fake_spotify.add_playlist("Up")
    status = StatusBoard()
    worker = PlayerWorker(_player(_config(fake_spotify, tmp_path), status), status)
    worker.start()
    try:
        worker.want(Intent(True, "happy", uri))
        wait_until(
            lambda: "speaker unavailable" in status.get("player_detail"), what="speaker unavailable"
        )
        assert status.get("player_state") == "waiting"
        wait_until(
            lambda: len(fake_spotify.calls("GET", "/v1/me/player/devices")) >= 3, what="retries"
        )
        speaker = fake_spotify.add_device("Kitchen")
        wait_until(lambda: fake_spotify.playback.is_playing, what="playback")
        assert fake_spotify.playback.device_id == speaker.id
        wait_until(lambda: status.get("player_state") == "playing", what="playing state")
    finally:
        worker.stop()


def test_no_active_device_answer_means_waiting_for_the_speaker(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """404 NO_ACTIVE_DEVICE on play → "speaker unavailable" with a backoff retry."""
    player = _player(_config(fake_spotify, tmp_path))
    fake_spotify.fail_next("PUT", "/v1/me/player/play", 404, reason="NO_ACTIVE_DEVICE")
    with pytest.raises(PlayerError, match="speaker unavailable") as err:
        player.apply(Intent(True, "happy", fake_spotify.add_playlist("Up")))
    assert err.value.retry_after is not None and 0 < err.value.retry_after <= 0.4


def test_server_errors_back_off_exponentially_capped_then_recover(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """A burst of 503s: each retry waits longer (jittered, within [d/2, d], d capped),
    and a success resets the backoff."""
    player = _player(_config(fake_spotify, tmp_path))
    uri = fake_spotify.add_playlist("Up")
    fake_spotify.fail_next("GET", "/v1/me/player/devices", 503, times=5)
    delays = []
    for _ in range(5):
        with pytest.raises(PlayerError, match="HTTP 503") as err:
            player.apply(Intent(True, "happy", uri))
        delays.append(err.value.retry_after)
    ceilings = [0.05, 0.1, 0.2, 0.4, 0.4]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    player.apply(Intent(True, "happy", uri))
    fake_spotify.fail_next("GET", "/v1/me/player/devices", 500)
    with pytest.raises(PlayerError) as err:
        player.apply(Intent(True, "sad", uri))
    assert err.value.retry_after is not None and err.value.retry_after <= 0.05


def test_network_down_is_reported_and_survived(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """Connection refused → "Spotify unreachable" with a retry; back up, it plays."""
    status = StatusBoard()
    player = _player(_config(fake_spotify, tmp_path), status)
    fake_spotify.network_down()
    with pytest.raises(PlayerError, match="unreachable") as err:
        player.apply(Intent(True, "happy", "spotify:playlist:0000000000000000000000"))
    assert err.value.retry_after is not None and status.get("spotify_state") == "unreachable"
    fake_spotify.network_up()
    player.apply(Intent(True, "happy", fake_spotify.add_playlist("Up")))
    assert fake_spotify.playback.is_playing
    assert status.get("spotify_state") == "linked as Ann"


def test_revoked_login_says_log_in_again_and_nothing_crashes(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """invalid_grant on refresh: spotify_state "log in again", player "error", the worker
    keeps running and takes the next intent."""
    status = StatusBoard()
    worker = PlayerWorker(_player(_config(fake_spotify, tmp_path), status), status)
    worker.start()
    try:
        fake_spotify.revoke_refresh_tokens()
        fake_spotify.expire_access_tokens()
        worker.want(Intent(True, "happy", fake_spotify.add_playlist("Up")))
        wait_until(lambda: status.get("spotify_state") == "log in again", what="log in again")
        assert status.get("player_state") == "error"
        worker.want(Intent(False, reason="nobody there"))
        wait_until(
            lambda: (
                "log in again" in status.get("player_detail")
                and len(fake_spotify.calls("POST", "/api/token")) == 2
            ),
            what="second try",
        )
    finally:
        worker.stop()


def test_a_burst_of_moods_while_spotify_is_slow_ends_with_the_last(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """Four moods in quick succession while each call takes 0.3 s: the middle ones are
    never played, the last one is what plays at the end."""
    uris = [fake_spotify.add_playlist(name) for name in ("A", "B", "C", "D")]
    fake_spotify.slow("GET", "/v1/me/player/devices", 0.3)
    status = StatusBoard()
    worker = PlayerWorker(_player(_config(fake_spotify, tmp_path), status), status)
    worker.start()
    try:
        for mood, uri in zip(("happy", "sad", "angry", "neutral"), uris, strict=True):
            worker.want(Intent(True, mood, uri))
            time.sleep(0.02)
        wait_until(lambda: fake_spotify.playback.context_uri == uris[-1], what="last mood")
    finally:
        worker.stop()
    played = [body["context_uri"] for body in _plays(fake_spotify)]
    assert played[-1] == uris[-1] and uris[1] not in played and uris[2] not in played
    assert len(played) <= 2


def test_next_and_pause_buttons_act_only_on_the_speaker(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """next_track skips on the speaker; pause pauses it; with nothing there, no call."""
    player = _player(_config(fake_spotify, tmp_path))
    player.next_track()
    assert fake_spotify.calls("POST", "/v1/me/player/next") == []
    player.apply(Intent(True, "happy", fake_spotify.add_playlist("Up")))
    player.next_track()
    assert fake_spotify.calls("POST", "/v1/me/player/next")[-1].query["device_id"] == speaker.id
    player.pause()
    assert not fake_spotify.playback.is_playing


def test_play_button_resumes_on_the_speaker_without_restarting(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """After Pause, Play continues the playlist where it was (no context in the call)."""
    player = _player(_config(fake_spotify, tmp_path))
    playlist = fake_spotify.add_playlist("Up")
    player.apply(Intent(True, "happy", playlist))
    player.pause()
    player.resume()
    plays = fake_spotify.calls("PUT", "/v1/me/player/play")
    resume = plays[-1]
    assert resume.query["device_id"] == speaker.id and "context_uri" not in (resume.body or {})
    assert fake_spotify.playback.is_playing and fake_spotify.playback.context_uri == playlist
    player.resume()  # already playing there: nothing to do
    assert len(fake_spotify.calls("PUT", "/v1/me/player/play")) == len(plays)


# --- the setup page's helpers and check ---------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "https://open.spotify.com/playlist/37i9dQZF1DXcBWIGoYBM5M?si=abc123",
        "open.spotify.com/intl-de/playlist/37i9dQZF1DXcBWIGoYBM5M",
        " spotify:playlist:37i9dQZF1DXcBWIGoYBM5M ",
    ],
)
def test_links_and_uris_are_parsed(text: str) -> None:
    """Shared links (with ?si= and intl-xx) and URIs give the context URI."""
    assert parse_spotify_link(text) == "spotify:playlist:37i9dQZF1DXcBWIGoYBM5M"


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com/playlist/37i9dQZF1DXcBWIGoYBM5M",
        "spotify:track:37i9dQZF1DXcBWIGoYBM5M",
        "hello",
    ],
)
def test_other_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="paste a link"):
        parse_spotify_link(text)


def test_setup_page_helpers(fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path) -> None:
    """Devices, playlist search (name, uri, image, owner), context info and a test play
    that plays then pauses."""
    uri = fake_spotify.add_playlist("Happy Hour")
    config = _config(fake_spotify, tmp_path)
    slept: list[float] = []
    service = SpotifyService(config, tmp_path, sleep=slept.append)
    assert [d["name"] for d in service.devices()] == ["Kitchen"]
    found = service.search_playlists("happy", limit=8)
    assert found == [
        {
            "name": "Happy Hour",
            "uri": uri,
            "owner": "Ann",
            "image": f"https://i.scdn.co/image/{uri.rsplit(':', 1)[1]}",
        }
    ]
    assert fake_spotify.calls("GET", "/v1/search")[-1].query["limit"] == "8"
    assert service.context_info(uri)["name"] == "Happy Hour"
    with pytest.raises(SpotifyServiceError, match="does not show this playlist"):
        service.context_info("spotify:playlist:0000000000000000000000")
    message = service.test_play("Kitchen", seconds=5)
    assert slept == [5] and "Kitchen" in message
    assert fake_spotify.calls("PUT", "/v1/me/player/pause") and not fake_spotify.playback.is_playing
    with pytest.raises(SpotifyServiceError, match="speaker unavailable"):
        service.test_play("Garage")


def test_check_reports_link_deadline_premium_and_speaker(
    fake_spotify: FakeSpotify, speaker: Device, tmp_path: Path
) -> None:
    """All fine: four ok lines. 20 days before the deadline: a warning line. A sleeping
    speaker and a free account are each reported."""
    config = _config(fake_spotify, tmp_path)
    lines = {name: (ok, msg) for name, ok, msg in check(config, tmp_path)}
    assert all(ok for ok, _ in lines.values()), lines
    assert set(lines) == {
        "spotify link",
        "spotify login deadline",
        "spotify premium",
        "spotify speaker",
    }
    late = time.time() + 162 * 86400
    lines = {name: (ok, msg) for name, ok, msg in check(config, tmp_path, clock=lambda: late)}
    assert lines["spotify login deadline"][0] is False
    assert "days left" in lines["spotify login deadline"][1]
    fake_spotify.remove_device(speaker.id)
    fake_spotify.user["product"] = "free"
    link(fake_spotify, config)
    lines = {name: (ok, msg) for name, ok, msg in check(config, tmp_path)}
    assert lines["spotify speaker"] == (False, lines["spotify speaker"][1])
    assert "speaker unavailable" in lines["spotify speaker"][1]
    assert lines["spotify premium"][0] is False


@pytest.mark.parametrize(
    "days_after_consent, label",
    [
        (0, "linked as Ann"),
        (151, "linked as Ann"),
        (153, "linked as Ann; log in again within 29 days"),
        (182, "log in again"),
    ],
)
def test_the_status_warns_weeks_before_the_login_deadline(
    days_after_consent: int, label: str
) -> None:
    """spotify_state (shown on the page and sent over MQTT) warns within 30 days of the
    six-month deadline and asks for a new login after it."""
    account = Account("ann", "Ann", "premium", consent_at=0.0)
    assert link_label(account, days_after_consent * 86400.0) == label
    assert link_label(None, 0.0) == "not linked"
    assert (
        link_label(Account("ann", "Ann", "premium", 0.0, broken="revoked"), 0.0) == "log in again"
    )


def test_check_without_a_chosen_speaker_says_so(fake_spotify: FakeSpotify, tmp_path: Path) -> None:
    """Linked, but no speaker set: the speaker line asks to pick one."""
    config = config_for(fake_spotify, tmp_path)
    link(fake_spotify, config)
    lines = {name: (ok, msg) for name, ok, msg in check(config, tmp_path)}
    assert lines["spotify speaker"] == (False, "no speaker chosen: pick one on the setup page")
