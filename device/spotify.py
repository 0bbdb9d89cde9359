"""Spotify Connect playback: the `spotify` player backend and the setup page's helpers.

`SpotifyPlayer` makes an `Intent` so on the chosen speaker through the Web API (with
spotipy), never interrupting what someone else started on the account, and turns every
failure into a `PlayerError` that says when trying again makes sense. `SpotifyService`
lists speakers, searches playlists and plays a test for the setup page; `check` is the
Spotify part of `moodmelody check`. Times of day are injected, so the rules are testable.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests
import spotipy
from spotipy.exceptions import SpotifyException

from device.atomic import write_atomic
from device.config import Config
from device.coordination import account_key
from device.player import Intent, PlayerError
from device.schedule import quiet_hours_left, scheduled_volume
from device.spotify_auth import Account, AuthUnavailable, LinkError, SpotifyAuth
from device.status import StatusBoard

logger = logging.getLogger(__name__)

REQUESTS_TIMEOUT_S = 5
DEFAULT_RETRY_AFTER_S = 30.0  # a 429 without Retry-After
QUOTA_BACKOFF_S = 3600.0  # the development-mode quota is shared per developer: wait long
BUSY_RECHECK_S = 300.0  # how often to look again while someone else's music plays
DEADLINE_WARNING_DAYS = 30
STATE_FILE = "spotify_player.json"

T = TypeVar("T")

_LINK = re.compile(
    r"^(?:spotify:(?P<kind>playlist|album|artist|show):(?P<id>[A-Za-z0-9]{10,40})"
    r"|(?:https?://)?open\.spotify\.com/(?:intl-[a-z]{2}(?:-[A-Za-z]{2})?/)?"
    r"(?P<kind2>playlist|album|artist|show)/(?P<id2>[A-Za-z0-9]{10,40})/?(?:[?#].*)?)$"
)


class _RedactBearer(logging.Filter):
    """spotipy logs request headers at DEBUG level; the access token must not reach a log."""

    _BEARER = re.compile(r"Bearer [A-Za-z0-9._~+/=-]+")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "Bearer " in text:
            record.msg, record.args = self._BEARER.sub("Bearer <redacted>", text), None
        return True


logging.getLogger("spotipy.client").addFilter(_RedactBearer())


# --- pure rules ----------------------------------------------------------------------------
def parse_spotify_link(text: str) -> str:
    """The context URI of a pasted link or URI (open.spotify.com/playlist/ID?si=..., spotify:..)."""
    match = _LINK.match(text.strip())
    if match is None:
        raise ValueError(
            "not a Spotify playlist, album, artist or show: paste a link like "
            "https://open.spotify.com/playlist/... or a spotify:playlist:... URI"
        )
    kind = match.group("kind") or match.group("kind2")
    return f"spotify:{kind}:{match.group('id') or match.group('id2')}"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits between d/2 and d, d = base·2ⁿ ≤ cap."""

    base: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 30))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def link_label(account: Account | None, now: float) -> str:
    """The `spotify_state` for the account link: not linked, log in again, or linked as."""
    if account is None:
        return "not linked"
    if account.broken or now >= account.deadline:
        return "log in again"
    label = f"linked as {account.display_name or account.user_id}"
    days = account.days_left(now)
    if days <= DEADLINE_WARNING_DAYS:
        label += f"; log in again within {days} days"
    return label


class SpeakerUnavailable(Exception):
    """The chosen speaker is not in the account's device list (asleep, off, elsewhere)."""


def _reason_text(err: SpotifyException) -> str:
    """The human part of spotipy's message (it prefixes the request URL)."""
    return str(err.msg).split("\n", 1)[-1].strip()


def describe_failure(err: Exception) -> tuple[str, str | None, str]:
    """(message, spotify_state or None, kind) for a failed call; kind is one of
    relogin, premium, quota, rate, speaker, refused, transient."""
    if isinstance(err, LinkError):
        return str(err), "log in again", "relogin"
    if isinstance(err, SpeakerUnavailable):
        return f"speaker unavailable: {err}", None, "speaker"
    if isinstance(err, AuthUnavailable):
        return str(err), "unreachable", "transient"
    if isinstance(err, requests.RequestException):
        return f"Spotify unreachable ({type(err).__name__})", "unreachable", "transient"
    if not isinstance(err, SpotifyException):
        return f"unexpected Spotify failure: {err}", None, "transient"
    status, reason, text = err.http_status, err.reason, _reason_text(err)
    if status == 429 and (reason == "QUOTA_EXCEEDED" or "quota" in text.lower()):
        return (
            "the Spotify app's request quota is used up (development-mode apps share "
            "one per developer); waiting an hour",
            "quota exceeded",
            "quota",
        )
    if status == 429:
        return "Spotify asks us to slow down (rate limited)", "rate limited", "rate"
    if status == 403 and reason == "PREMIUM_REQUIRED":
        return (
            "Spotify Premium is required to control playback: this account cannot be "
            "steered by Mood Melody",
            "premium required",
            "premium",
        )
    if status == 404:
        return f"speaker unavailable: {text}", None, "speaker"
    if status in (400, 403):
        return f"Spotify refused the request: {text}", None, "refused"
    state = "unreachable" if status >= 500 else None
    return f"Spotify failed (HTTP {status}): {text}", state, "transient"


def _retry_after(err: Exception) -> float:
    headers = getattr(err, "headers", None) or {}
    try:
        return max(1.0, float(headers.get("Retry-After", DEFAULT_RETRY_AFTER_S)))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


# --- the Web API client ---------------------------------------------------------------------
class _TokenSource:
    """spotipy's auth manager: our access token, remembering the one last handed out."""

    def __init__(self, auth: SpotifyAuth) -> None:
        self._auth = auth
        self.last = ""

    def get_access_token(self, as_dict: bool = False) -> str:
        self.last = self._auth.access_token()
        return self.last


class SpotifyApi:
    """spotipy pointed at `[spotify] api_url`; a 401 gets one refresh and one retry."""

    def __init__(self, config: Config, state_dir: Path) -> None:
        self.auth = SpotifyAuth(config, state_dir)
        self._tokens = _TokenSource(self.auth)
        # No urllib3 retries at all: with spotipy's own session even retries=0 turns a 429
        # or 5xx into "Max Retries" without Retry-After or reason (its status_forcelist
        # cannot be emptied), and its default retries sleep out Retry-After for up to an
        # hour (spotipy #766, #1224). We retry ourselves, on the worker.
        self._session = requests.Session()
        self._client = spotipy.Spotify(
            auth_manager=self._tokens,
            requests_session=self._session,
            retries=0,
            status_retries=0,
            requests_timeout=REQUESTS_TIMEOUT_S,
        )
        api_url = config.spotify.api_url
        self._client.prefix = api_url if api_url.endswith("/") else api_url + "/"

    def call(self, action: Callable[[spotipy.Spotify], T]) -> T:
        try:
            return action(self._client)
        except SpotifyException as err:
            if err.http_status != 401:
                raise
        logger.info("Spotify rejected the access token; refreshing it and trying once more")
        self.auth.refresh_rejected(self._tokens.last)
        return action(self._client)

    def close(self) -> None:
        self._session.close()


def find_speaker(devices: list[dict[str, Any]], name: str, known_id: str) -> dict[str, Any]:
    """The speaker: by its last known id while listed, else by name (ids can change)."""
    for device in devices:
        if known_id and device.get("id") == known_id:
            return device
    wanted = name.strip().casefold()
    for device in devices:
        if wanted and str(device.get("name", "")).strip().casefold() == wanted:
            return device
    listed = ", ".join(str(d.get("name")) for d in devices) or "none"
    raise SpeakerUnavailable(
        f"{name or known_id!r} is not among the account's devices "
        f"(listed: {listed}); is it asleep or off?"
    )


# --- the player backend ---------------------------------------------------------------------
class SpotifyPlayer:
    """The `spotify` Player: plays each mood's context on the chosen Connect speaker."""

    def __init__(
        self,
        config: Config,
        status: StatusBoard,
        state_dir: Path,
        *,
        now: Callable[[], datetime] = datetime.now,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._status = status
        self._api = SpotifyApi(config, state_dir)
        self._state_file = Path(state_dir) / STATE_FILE
        self._state = self._load_state()
        self._now = now
        self._backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._failures = 0  # consecutive failures, for the backoff
        self._contexts: dict[str, dict[str, Any]] = {}  # uri -> {"name", "total"}
        self._show_link()

    # Player protocol
    def apply(self, intent: Intent) -> None:
        if intent.play and (
            wait := quiet_hours_left(self._config.player.quiet_hours, self._now().time())
        ):
            until = (self._now() + timedelta(seconds=wait)).strftime("%H:%M")
            raise PlayerError(f"quiet hours until {until}: no automatic playback", wait)
        self._guarded(lambda: self._play(intent) if intent.play else self._pause_ours())

    def next_track(self) -> None:
        self._guarded(self._next)

    def pause(self) -> None:
        self._guarded(self._pause_speaker)

    def resume(self) -> None:
        self._guarded(self._resume_speaker)

    def close(self) -> None:
        self._api.close()

    # the work
    def _guarded(self, work: Callable[[], None]) -> None:
        """Run `work`; a failure becomes a PlayerError with a sensible retry time."""
        try:
            work()
        except (
            SpotifyException,
            requests.RequestException,
            LinkError,
            AuthUnavailable,
            SpeakerUnavailable,
        ) as err:
            raise self._failed(err) from err
        self._failures = 0
        self._show_link()

    def _show_link(self) -> None:
        account = self._api.auth.account()
        self._status.update(
            spotify_state=link_label(account, time.time()),
            spotify_account=account_key(account.user_id) if account else "",
        )

    def _failed(self, err: Exception) -> PlayerError:
        message, state, kind = describe_failure(err)
        if state is not None:
            self._status.update(spotify_state=state)
        retry: float | None
        if kind in ("relogin", "premium", "refused"):
            retry = None  # repeating will not help until a login or a setting changes
        elif kind == "quota":
            retry = max(QUOTA_BACKOFF_S, _retry_after(err))
        elif kind == "rate":
            retry = _retry_after(err)
        else:
            retry = self._backoff.delay(self._failures, self._rng)
            self._failures += 1
        return PlayerError(message, retry)

    def _speaker(self) -> dict[str, Any]:
        spotify = self._config.spotify
        known_id = self._state.get("device_id") or spotify.device_id
        if not (spotify.device_name or known_id):
            raise PlayerError("no speaker chosen: pick one on the setup page", None)
        devices = self._api.call(lambda sp: sp.devices())["devices"]
        device = find_speaker(devices, spotify.device_name, known_id)
        if device["id"] != self._state.get("device_id"):
            logger.info("speaker %r has id %s", device["name"], device["id"])
            self._save_state(device_id=device["id"], device_name=device["name"])
        return device

    def _playback(self) -> dict[str, Any]:
        """The account's playback state; {} when nothing is active."""
        return self._api.call(lambda sp: sp.current_playback()) or {}

    def _is_ours(self, playback: dict[str, Any]) -> bool:
        """True when the account plays the context we last started on our speaker (or
        take_over is on). Our playlist on another speaker is not ours any more: someone moved
        it there, or another Mood Melody on the account started it."""
        if self._config.player.take_over:
            return True
        context = (playback.get("context") or {}).get("uri")
        ours = bool(context) and context == self._state.get("context_uri")
        return ours and self._on_speaker(playback) is not None

    def _not_taken(self, playback: dict[str, Any], intent: Intent) -> PlayerError | None:
        """Why the music playing now must not be interrupted; None when it may be: it is ours,
        or another Mood Melody of the home started it and hands the account over."""
        context = (playback.get("context") or {}).get("uri") or ""
        speaker = str((playback.get("device") or {}).get("name", ""))
        if not playback.get("is_playing") or self._is_ours(playback):
            return None
        if (context, speaker) in intent.handover:
            logger.info("taking over from the Mood Melody playing on %s", speaker)
            return None
        if context and context == self._state.get("context_uri"):
            why = f"{context} is playing on {speaker}: not taking it away"
        else:
            other = context or "something"
            why = f"someone else is playing {other} on {speaker or 'the account'}: not interrupting"
        return PlayerError(f"{why} (take_over is off)", BUSY_RECHECK_S)

    def _play(self, intent: Intent) -> None:
        target = intent.context_uri or self._state.get("context_uri", "")
        if not target:
            logger.info("no playlist set for mood %s; leaving playback alone", intent.mood)
            return
        device = self._speaker()
        playback = self._playback()
        if busy := self._not_taken(playback, intent):
            raise busy
        device_id = device["id"]
        current = (playback.get("context") or {}).get("uri")
        here = (playback.get("device") or {}).get("id") == device_id
        if current == target and here:
            if not playback.get("is_playing"):
                logger.info("resuming %s on %s", target, device["name"])
                self._api.call(lambda sp: sp.start_playback(device_id=device_id))
        elif current == target:
            logger.info("moving %s to %s", target, device["name"])
            self._api.call(lambda sp: sp.transfer_playback(device_id, force_play=True))
        else:
            self._start(target, device_id, intent)
        self._set_volume(device)
        info = self._context(target)
        self._status.update(
            player_state="playing",
            now_playing={
                "context_uri": target,
                "name": info.get("name") or intent.mood or "",
                "device": device["name"],
            },
        )

    def _start(self, target: str, device_id: str, intent: Intent) -> None:
        shuffle = self._config.player.shuffle
        total = self._context(target).get("total", 0)
        offset = {"position": self._rng.randrange(total)} if shuffle and total else None
        logger.info("playing %s for mood %s (%s)", target, intent.mood, intent.reason)
        self._api.call(
            lambda sp: sp.start_playback(device_id=device_id, context_uri=target, offset=offset)
        )
        self._save_state(context_uri=target)  # ours from now on, even if shuffle fails
        self._api.call(lambda sp: sp.shuffle(shuffle, device_id=device_id))

    def _set_volume(self, device: dict[str, Any]) -> None:
        volume = scheduled_volume(self._config.player.volume_schedule, self._now().time())
        if volume is None or not device.get("supports_volume", True):
            return
        if device.get("volume_percent") == volume:
            return
        try:
            self._api.call(lambda sp: sp.volume(volume, device_id=device["id"]))
        except SpotifyException as err:
            if err.http_status != 403:
                raise
            logger.info("the speaker does not take volume changes: %s", _reason_text(err))

    def _context(self, uri: str) -> dict[str, Any]:
        """Name and track count of a playlist (cached); {} for other contexts or on failure."""
        kind, _, cid = uri.partition(":")[2].partition(":")
        if kind != "playlist":
            return {}
        if uri not in self._contexts:
            try:
                data = self._api.call(lambda sp: sp.playlist(cid, fields="name,items(total)"))
            except SpotifyException as err:
                if err.http_status != 404:  # private or Spotify-owned: play it unnamed
                    raise
                data = {}
            self._contexts[uri] = {
                "name": data.get("name", ""),
                "total": (data.get("items") or {}).get("total", 0),
            }
        return self._contexts[uri]

    def _pause_ours(self) -> None:
        playback = self._playback()
        if playback.get("is_playing") and self._is_ours(playback):
            device_id = playback["device"]["id"]
            logger.info(
                "pausing %s", playback["context"]["uri"] if playback.get("context") else "playback"
            )
            self._api.call(lambda sp: sp.pause_playback(device_id=device_id))
            self._status.update(player_state="paused")
        elif not playback.get("is_playing"):
            self._status.update(player_state="paused")

    def _on_speaker(self, playback: dict[str, Any]) -> str | None:
        """The speaker's id when it is the device now playing, else None."""
        device = playback.get("device") or {}
        spotify = self._config.spotify
        known = {self._state.get("device_id"), spotify.device_id} - {None, ""}
        same_name = bool(spotify.device_name) and (
            str(device.get("name", "")).casefold() == spotify.device_name.casefold()
        )
        if playback.get("is_playing") and (device.get("id") in known or same_name):
            return str(device["id"])
        return None

    def _next(self) -> None:
        if device_id := self._on_speaker(self._playback()):
            self._api.call(lambda sp: sp.next_track(device_id=device_id))
        else:
            logger.info("next track: nothing plays on the speaker")

    def _pause_speaker(self) -> None:
        if device_id := self._on_speaker(self._playback()):
            self._api.call(lambda sp: sp.pause_playback(device_id=device_id))
        self._status.update(player_state="paused")

    def _resume_speaker(self) -> None:
        """Resume the account's playback on the speaker (moving it there if it was elsewhere)."""
        if not self._on_speaker(self._playback()):
            device = self._speaker()
            logger.info("resuming playback on %s (button)", device["name"])
            self._api.call(lambda sp: sp.start_playback(device_id=device["id"]))
        self._status.update(player_state="playing")

    # state file: the speaker's last id and the context we last started
    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self, **changes: str) -> None:
        self._state.update(changes)
        write_atomic(self._state_file, json.dumps(self._state))


# --- the setup page's helpers ---------------------------------------------------------------
class SpotifyServiceError(Exception):
    """A setup-page request to Spotify failed; the message is for the user."""


class SpotifyService:
    """What the setup page asks of Spotify: speakers, playlist search, a test play."""

    def __init__(
        self, config: Config, state_dir: Path, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._config = config
        self._api = SpotifyApi(config, state_dir)
        self._sleep = sleep

    def _call(self, action: Callable[[spotipy.Spotify], T]) -> T:
        try:
            return self._api.call(action)
        except (SpotifyException, requests.RequestException, LinkError, AuthUnavailable) as err:
            raise SpotifyServiceError(describe_failure(err)[0]) from err

    def devices(self) -> list[dict[str, Any]]:
        answer = self._call(lambda sp: sp.devices())
        return [
            {key: d.get(key) for key in ("id", "name", "type", "is_active", "volume_percent")}
            for d in answer["devices"]
        ]

    def search_playlists(self, query: str, limit: int = 8) -> list[dict[str, str]]:
        answer = self._call(lambda sp: sp.search(query, limit=limit, type="playlist"))
        found = []
        for item in answer["playlists"]["items"]:
            if not item:  # Spotify answers null for items it will not show
                continue
            owner = item.get("owner") or {}
            found.append(
                {
                    "name": item.get("name", ""),
                    "uri": item["uri"],
                    "image": (item.get("images") or [{}])[0].get("url", ""),
                    "owner": owner.get("display_name") or owner.get("id", ""),
                }
            )
        return found

    def context_info(self, uri: str) -> dict[str, str]:
        """Name and image of a context; only playlists are looked up (others: by kind)."""
        uri = parse_spotify_link(uri)
        kind, _, cid = uri.partition(":")[2].partition(":")
        if kind != "playlist":
            return {"uri": uri, "name": f"Spotify {kind}", "image": "", "owner": ""}
        try:
            data = self._api.call(lambda sp: sp.playlist(cid, fields="name,images,owner"))
        except SpotifyException as err:
            if err.http_status == 404:
                raise SpotifyServiceError(
                    "Spotify does not show this playlist (deleted, "
                    "private, or owned by Spotify); it may still "
                    "play"
                ) from err
            raise SpotifyServiceError(describe_failure(err)[0]) from err
        except (requests.RequestException, LinkError, AuthUnavailable) as err:
            raise SpotifyServiceError(describe_failure(err)[0]) from err
        owner = data.get("owner") or {}
        return {
            "uri": uri,
            "name": data.get("name", ""),
            "image": (data.get("images") or [{}])[0].get("url", ""),
            "owner": owner.get("display_name") or owner.get("id", ""),
        }

    def test_play(self, device_name_or_id: str, seconds: float = 5) -> str:
        """Play the first configured playlist (or resume) on a speaker for `seconds`, pause."""
        devices = self._call(lambda sp: sp.devices())["devices"]
        try:
            device = find_speaker(devices, device_name_or_id, device_name_or_id)
        except SpeakerUnavailable as err:
            raise SpotifyServiceError(f"speaker unavailable: {err}") from err
        device_id = device["id"]
        playlists = self._config.playlists
        context = next(
            (
                playlists.for_mood(m)
                for m in ("happy", "neutral", "sad", "angry", "surprise", "fear", "disgust")
                if playlists.for_mood(m)
            ),
            None,
        )
        if context:
            self._call(lambda sp: sp.start_playback(device_id=device_id, context_uri=context))
        else:
            self._call(lambda sp: sp.transfer_playback(device_id, force_play=True))
        self._sleep(seconds)
        self._call(lambda sp: sp.pause_playback(device_id=device_id))
        return f"played {context or 'the current queue'} on {device['name']} for {seconds:g} s"

    def close(self) -> None:
        self._api.close()


def check(
    config: Config, state_dir: Path, clock: Callable[[], float] = time.time
) -> list[tuple[str, bool, str]]:
    """`moodmelody check` lines for Spotify: (name, ok, message)."""
    auth = SpotifyAuth(config, state_dir, clock)
    account = auth.account()
    now = clock()
    lines: list[tuple[str, bool, str]] = []
    if not config.spotify.client_id:
        return [
            (
                "spotify link",
                False,
                "no client id: register a Spotify app and enter it on the setup page",
            )
        ]
    if account is None:
        return [
            (
                "spotify link",
                False,
                "not linked: log in on the setup page or run `moodmelody login`",
            )
        ]
    label = link_label(account, now)
    lines.append(("spotify link", label.startswith("linked"), account.broken or label))
    deadline = time.strftime("%Y-%m-%d", time.localtime(account.deadline))
    days = account.days_left(now)
    lines.append(
        (
            "spotify login deadline",
            days > DEADLINE_WARNING_DAYS,
            f"log in again before {deadline} ({days} days left)",
        )
    )
    lines.append(
        (
            "spotify premium",
            account.premium,
            "Premium"
            if account.premium
            else f"{account.product or 'unknown'} account: playback control needs Premium",
        )
    )
    if not label.startswith("linked"):
        return lines
    if not (config.spotify.device_name or config.spotify.device_id):
        return [*lines, ("spotify speaker", False, "no speaker chosen: pick one on the setup page")]
    api = SpotifyApi(config, state_dir)
    try:
        devices = api.call(lambda sp: sp.devices())["devices"]
        device = find_speaker(devices, config.spotify.device_name, config.spotify.device_id)
        lines.append(("spotify speaker", True, f"{device['name']} is available"))
    except SpeakerUnavailable as err:
        lines.append(("spotify speaker", False, f"speaker unavailable: {err}"))
    except (SpotifyException, requests.RequestException, LinkError, AuthUnavailable) as err:
        lines.append(("spotify speaker", False, describe_failure(err)[0]))
    finally:
        api.close()
    return lines
