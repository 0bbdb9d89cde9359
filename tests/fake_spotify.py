"""A fake of the Spotify Web API and accounts service: a real HTTP server on 127.0.0.1.

It serves the parts Mood Melody uses, with Spotify's documented requests, responses and
error bodies: the PKCE authorization (`/authorize`, `/api/token`), `/v1/me`, the player
endpoints, search and playlists. It keeps the player state (which device plays which
context), records every request, and injects on demand each failure the device must
survive: expired tokens, rate limits, quota, Premium, missing devices, 5xx bursts,
revoked refresh tokens, slow answers and the network going down.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from device.config import Config, apply_changes

CLIENT_ID = "0123456789abcdef0123456789abcdef"
LOOPBACK_REDIRECT = "http://127.0.0.1:8888/callback"
ALL_SCOPES = "user-read-playback-state user-modify-playback-state user-read-private"

_PLAYER_SCOPES = {
    ("GET", "/v1/me/player"): "user-read-playback-state",
    ("GET", "/v1/me/player/devices"): "user-read-playback-state",
    ("PUT", "/v1/me/player"): "user-modify-playback-state",
    ("PUT", "/v1/me/player/play"): "user-modify-playback-state",
    ("PUT", "/v1/me/player/pause"): "user-modify-playback-state",
    ("PUT", "/v1/me/player/shuffle"): "user-modify-playback-state",
    ("PUT", "/v1/me/player/volume"): "user-modify-playback-state",
    ("POST", "/v1/me/player/next"): "user-modify-playback-state",
}
_CONTEXT_URI = re.compile(r"^spotify:(playlist|album|artist|show):[A-Za-z0-9]+$")


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON, the form fields of a token request, or None
    time: float  # time.monotonic() when it arrived


@dataclass
class Failure:
    """An injected error answer for the next matching request(s)."""

    method: str
    path: str
    status: int
    reason: str | None = None
    message: str | None = None
    retry_after: int | None = None
    error: str | None = None  # accounts service: the OAuth error code
    times: int = 1


@dataclass
class Device:
    id: str
    name: str
    type: str = "Speaker"
    volume_percent: int = 50
    supports_volume: bool = True

    def as_json(self, active: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_active": active,
            "is_private_session": False,
            "is_restricted": False,
            "name": self.name,
            "type": self.type,
            "volume_percent": self.volume_percent,
            "supports_volume": self.supports_volume,
        }


@dataclass
class Playback:
    """What the account plays; the real service keeps one per account."""

    device_id: str | None = None
    context_uri: str | None = None
    is_playing: bool = False
    shuffle: bool = False
    track: int = 0


@dataclass
class Tokens:
    access: dict[str, tuple[float, str]] = field(default_factory=dict)  # token -> (expiry, scope)
    refresh: dict[str, str] = field(default_factory=dict)  # token -> scope
    codes: dict[str, dict[str, str]] = field(default_factory=dict)


def _playlist_json(base: str, pid: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": pid,
        "name": data["name"],
        "type": "playlist",
        "uri": f"spotify:playlist:{pid}",
        "href": f"{base}/v1/playlists/{pid}",
        "public": True,
        "collaborative": False,
        "description": data.get("description", ""),
        "external_urls": {"spotify": f"https://open.spotify.com/playlist/{pid}"},
        "images": [{"url": f"https://i.scdn.co/image/{pid}", "height": 640, "width": 640}],
        "owner": {"id": data["owner"], "display_name": data["owner"].title(), "type": "user"},
        "items": {"href": f"{base}/v1/playlists/{pid}/items", "total": len(data["tracks"])},
    }


class FakeSpotify:
    """The fake service. Tests change its state and read `requests` directly."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.client_id = CLIENT_ID
        self.redirect_uris = {LOOPBACK_REDIRECT}
        self.user = {"id": "ann", "display_name": "Ann", "product": "premium"}
        self.token_lifetime_s = 3600
        self.rotate_refresh_tokens = True  # a used refresh token is no longer valid
        self.deny_consent = False  # the user presses "Cancel" on the consent page
        self.devices: dict[str, Device] = {}
        self.playback = Playback()
        self.playlists: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.tokens = Tokens()
        self._failures: list[Failure] = []
        self._delays: dict[tuple[str, str], float] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1/"

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            name="fake-spotify",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def network_down(self) -> None:
        """Stop listening: connections are refused until `network_up()` (same port)."""
        self.stop()

    def network_up(self) -> None:
        self.start()

    # --- set-up helpers ----------------------------------------------------------------
    def add_device(self, name: str, device_id: str | None = None, **extra: Any) -> Device:
        with self._lock:
            device = Device(id=device_id or secrets.token_hex(20), name=name, **extra)
            self.devices[device.id] = device
            return device

    def remove_device(self, device_id: str) -> None:
        """The speaker goes to sleep: it leaves the list, and stops playing if it was."""
        with self._lock:
            self.devices.pop(device_id, None)
            if self.playback.device_id == device_id:
                self.playback.is_playing = False

    def add_playlist(self, name: str, owner: str = "ann", tracks: int = 20) -> str:
        with self._lock:
            pid = secrets.token_hex(11)[:22]
            self.playlists[pid] = {
                "name": name,
                "owner": owner,
                "tracks": [f"spotify:track:{secrets.token_hex(11)[:22]}" for _ in range(tracks)],
            }
            return f"spotify:playlist:{pid}"

    def someone_else_plays(self, context_uri: str, device_id: str) -> None:
        """The user starts something from their phone, outside the device."""
        with self._lock:
            self.playback = Playback(device_id=device_id, context_uri=context_uri, is_playing=True)

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        *,
        reason: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` requests to `method path` get this error answer."""
        with self._lock:
            self._failures.append(
                Failure(method, path, status, reason, message, retry_after, error, times)
            )

    def slow(self, method: str, path: str, seconds: float) -> None:
        """Answers to `method path` take `seconds` longer (0 removes the delay)."""
        with self._lock:
            self._delays[(method, path)] = seconds

    def expire_access_tokens(self) -> None:
        with self._lock:
            self.tokens.access = {t: (0.0, s) for t, (_, s) in self.tokens.access.items()}

    def revoke_refresh_tokens(self) -> None:
        """The user removed the app's access in their account (or six months passed)."""
        with self._lock:
            self.tokens.refresh.clear()

    def consent(self, authorize_url: str) -> str:
        """The user approves on Spotify's page: the address the browser is sent back to."""
        answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
        if answer.status_code != 302:
            raise AssertionError(f"authorize answered {answer.status_code}: {answer.text}")
        return answer.headers["Location"]

    def calls(self, method: str, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    # --- request handling (called from server threads) ---------------------------------
    def _record(self, method: str, path: str, query: dict[str, str], body: Any) -> None:
        with self._lock:
            self.requests.append(Recorded(method, path, query, body, time.monotonic()))

    def _injected(self, method: str, path: str) -> Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.method == method and failure.path == path:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return failure
            return None

    def _delay(self, method: str, path: str) -> float:
        with self._lock:
            return self._delays.get((method, path), 0.0)


class ApiError(Exception):
    """An answer in the Web API's documented error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": {"status": status, "message": message}}
        if reason:
            self.body["error"]["reason"] = reason
        self.headers = headers or {}


class OAuthError(Exception):
    """An answer in the accounts service's documented error shape."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status = status
        self.body = {"error": error, "error_description": description}


def _handler_for(fake: FakeSpotify) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        spotify = fake

    return Handler


class _Handler(BaseHTTPRequestHandler):
    spotify: FakeSpotify
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        fake = self.spotify
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = self._parse_body(raw)
        fake._record(method, path, query, body)
        if delay := fake._delay(method, path):
            time.sleep(delay)
        try:
            if failure := fake._injected(method, path):
                self._raise_failure(failure)
            status, payload, headers = _route(fake, method, path, query, body, self.headers)
        except ApiError as err:
            status, payload, headers = err.status, err.body, err.headers
        except OAuthError as err:
            status, payload, headers = err.status, err.body, {}
        self._answer(status, payload, headers)

    def _parse_body(self, raw: bytes) -> Any:
        if not raw:
            return None
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    @staticmethod
    def _raise_failure(failure: Failure) -> None:
        if failure.error:
            raise OAuthError(failure.error, failure.message or failure.error, failure.status)
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
        message = failure.message or _DEFAULT_MESSAGES.get(failure.status, "Error")
        raise ApiError(failure.status, message, failure.reason, headers)

    def _answer(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


_DEFAULT_MESSAGES = {
    401: "The access token expired",
    403: "Player command failed: Premium required",
    404: "Player command failed: No active device found",
    429: "API rate limit exceeded",
    500: "Server error",
    502: "Bad gateway",
    503: "Service unavailable",
}

Answer = tuple[int, Any, dict[str, str]]


def _route(
    fake: FakeSpotify, method: str, path: str, query: dict[str, str], body: Any, headers: Any
) -> Answer:
    if path == "/authorize" and method == "GET":
        return _authorize(fake, query)
    if path == "/api/token" and method == "POST":
        return 200, _token(fake, body if isinstance(body, dict) else {}), {}
    if not path.startswith("/v1/"):
        raise ApiError(404, "Service not found")
    scope = _authenticate(fake, headers.get("Authorization", ""))
    if (needed := _PLAYER_SCOPES.get((method, path))) and needed not in scope.split():
        raise ApiError(403, "Insufficient client scope")
    with fake._lock:
        return _api(fake, method, path, query, body if isinstance(body, dict) else {}, scope)


def _authorize(fake: FakeSpotify, query: dict[str, str]) -> Answer:
    if query.get("client_id") != fake.client_id:
        raise ApiError(400, "INVALID_CLIENT: Invalid client")
    redirect_uri = query.get("redirect_uri", "")
    if redirect_uri not in fake.redirect_uris:
        raise ApiError(400, "INVALID_CLIENT: Invalid redirect URI")
    if query.get("response_type") != "code":
        raise ApiError(400, "unsupported_response_type")
    if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
        raise ApiError(400, "code_challenge_method and code_challenge are required")
    back: dict[str, str] = {}
    if fake.deny_consent:
        back["error"] = "access_denied"
    else:
        code = secrets.token_urlsafe(32)
        with fake._lock:
            fake.tokens.codes[code] = {
                "challenge": query["code_challenge"],
                "redirect_uri": redirect_uri,
                "scope": query.get("scope", ""),
                "client_id": query["client_id"],
            }
        back["code"] = code
    if "state" in query:
        back["state"] = query["state"]
    return 302, None, {"Location": f"{redirect_uri}?{urlencode(back)}"}


def _token(fake: FakeSpotify, form: dict[str, str]) -> dict[str, Any]:
    if form.get("client_id") != fake.client_id:
        raise OAuthError("invalid_client", "Invalid client")
    grant = form.get("grant_type")
    with fake._lock:
        if grant == "authorization_code":
            return _issue(fake, _redeem_code(fake, form), new_refresh=True)
        if grant == "refresh_token":
            scope = fake.tokens.refresh.get(form.get("refresh_token", ""))
            if scope is None:
                raise OAuthError("invalid_grant", "Invalid refresh token")
            if fake.rotate_refresh_tokens:
                del fake.tokens.refresh[form["refresh_token"]]
            return _issue(fake, scope, new_refresh=fake.rotate_refresh_tokens)
    raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")


def _redeem_code(fake: FakeSpotify, form: dict[str, str]) -> str:
    grant = fake.tokens.codes.pop(form.get("code", ""), None)
    if grant is None:
        raise OAuthError("invalid_grant", "Invalid authorization code")
    if form.get("redirect_uri") != grant["redirect_uri"]:
        raise OAuthError("invalid_grant", "Invalid redirect URI")
    verifier = form.get("code_verifier", "")
    digest = hashlib.sha256(verifier.encode()).digest()
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
        raise OAuthError("invalid_grant", "code_verifier was incorrect")
    return grant["scope"]


def _issue(fake: FakeSpotify, scope: str, new_refresh: bool) -> dict[str, Any]:
    access = secrets.token_urlsafe(48)
    fake.tokens.access[access] = (time.time() + fake.token_lifetime_s, scope)
    answer: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": fake.token_lifetime_s,
    }
    if new_refresh:
        refresh = secrets.token_urlsafe(48)
        fake.tokens.refresh[refresh] = scope
        answer["refresh_token"] = refresh
    return answer


def _authenticate(fake: FakeSpotify, authorization: str) -> str:
    kind, _, token = authorization.partition(" ")
    if kind != "Bearer" or not token:
        raise ApiError(401, "No token provided")
    with fake._lock:
        known = fake.tokens.access.get(token)
    if known is None:
        raise ApiError(401, "Invalid access token")
    expiry, scope = known
    if expiry < time.time():
        raise ApiError(401, "The access token expired")
    return scope


def _api(
    fake: FakeSpotify,
    method: str,
    path: str,
    query: dict[str, str],
    body: dict[str, Any],
    scope: str,
) -> Answer:
    if path == "/v1/me" and method == "GET":
        user = dict(fake.user, type="user", uri=f"spotify:user:{fake.user['id']}")
        if "user-read-private" not in scope.split():
            user.pop("product")
        return 200, user, {}
    if path == "/v1/search" and method == "GET":
        return 200, _search(fake, query), {}
    if match := re.fullmatch(r"/v1/playlists/([A-Za-z0-9]+)(/items|/tracks)?", path):
        return 200, _playlist(fake, match.group(1), match.group(2)), {}
    if path.startswith("/v1/me/player"):
        return _player(fake, method, path, query, body)
    raise ApiError(404, "Service not found")


def _search(fake: FakeSpotify, query: dict[str, str]) -> dict[str, Any]:
    if not query.get("q"):
        raise ApiError(400, "No search query")
    if query.get("type") != "playlist":
        raise ApiError(400, "Unsupported type (the fake serves type=playlist)")
    limit, offset = int(query.get("limit", 20)), int(query.get("offset", 0))
    if not 0 <= limit <= 50:
        raise ApiError(400, "Invalid limit")
    words = query["q"].lower().split()
    found = [
        _playlist_json(fake.base_url, pid, data)
        for pid, data in fake.playlists.items()
        if all(w in data["name"].lower() for w in words)
    ]
    page = found[offset : offset + limit]
    return {
        "playlists": {
            "href": f"{fake.base_url}/v1/search",
            "items": page,
            "limit": limit,
            "offset": offset,
            "total": len(found),
            "previous": None,
            "next": None,
        }
    }


def _playlist(fake: FakeSpotify, pid: str, sub: str | None) -> dict[str, Any]:
    if sub == "/tracks":  # removed for development-mode apps in Feb 2026
        raise ApiError(403, "Forbidden")
    data = fake.playlists.get(pid)
    if data is None:
        raise ApiError(404, "Resource not found")
    if sub is None:
        return _playlist_json(fake.base_url, pid, data)
    items = [
        {
            "added_at": "2026-01-01T00:00:00Z",
            "is_local": False,
            "item": {"uri": uri, "type": "track", "id": uri.rsplit(":", 1)[1]},
        }
        for uri in data["tracks"]
    ]
    return {
        "href": f"{fake.base_url}/v1/playlists/{pid}/items",
        "items": items[:50],
        "limit": 50,
        "offset": 0,
        "total": len(items),
        "next": None,
        "previous": None,
    }


def _target_device(fake: FakeSpotify, query: dict[str, str]) -> str:
    device_id = query.get("device_id") or fake.playback.device_id
    if device_id is None:
        raise ApiError(404, "Player command failed: No active device found", "NO_ACTIVE_DEVICE")
    if device_id not in fake.devices:
        raise ApiError(404, "Device not found")
    return device_id


def _player(
    fake: FakeSpotify, method: str, path: str, query: dict[str, str], body: dict[str, Any]
) -> Answer:
    if fake.user["product"] != "premium" and method != "GET":
        raise ApiError(403, "Player command failed: Premium required", "PREMIUM_REQUIRED")
    pb = fake.playback
    active = pb.device_id if pb.device_id in fake.devices else None
    if (method, path) == ("GET", "/v1/me/player/devices"):
        return 200, {"devices": [d.as_json(d.id == active) for d in fake.devices.values()]}, {}
    if (method, path) == ("GET", "/v1/me/player"):
        return _playback_state(fake, active)
    if (method, path) == ("PUT", "/v1/me/player"):
        ids = body.get("device_ids")
        if not (isinstance(ids, list) and len(ids) == 1):
            raise ApiError(400, "device_ids must hold exactly one device id")
        if ids[0] not in fake.devices:
            raise ApiError(404, "Device not found")
        pb.device_id = ids[0]
        pb.is_playing = bool(body.get("play")) or pb.is_playing
        return 204, None, {}
    device_id = _target_device(fake, query)
    if (method, path) == ("PUT", "/v1/me/player/play"):
        uri = body.get("context_uri")
        if uri is not None and not _CONTEXT_URI.match(uri):
            raise ApiError(400, "Invalid context uri")
        if uri is not None:
            pb.context_uri, pb.track = uri, int(body.get("offset", {}).get("position", 0))
        pb.device_id, pb.is_playing = device_id, True
        return 204, None, {}
    if (method, path) == ("PUT", "/v1/me/player/pause"):
        if not pb.is_playing:
            raise ApiError(403, "Player command failed: Already paused", "ALREADY_PAUSED")
        pb.is_playing = False
        return 204, None, {}
    if (method, path) == ("PUT", "/v1/me/player/shuffle"):
        pb.shuffle = query.get("state") == "true"
        return 204, None, {}
    if (method, path) == ("PUT", "/v1/me/player/volume"):
        device = fake.devices[device_id]
        if not device.supports_volume:
            raise ApiError(
                403,
                "Player command failed: Cannot control device volume",
                "VOLUME_CONTROL_DISALLOW",
            )
        device.volume_percent = int(query["volume_percent"])
        return 204, None, {}
    if (method, path) == ("POST", "/v1/me/player/next"):
        pb.track += 1
        return 204, None, {}
    raise ApiError(404, "Service not found")


def _playback_state(fake: FakeSpotify, active: str | None) -> Answer:
    pb = fake.playback
    if active is None:
        return 204, None, {}
    context = None
    if pb.context_uri:
        kind, cid = pb.context_uri.split(":")[1:]
        context = {
            "type": kind,
            "uri": pb.context_uri,
            "href": f"{fake.base_url}/v1/{kind}s/{cid}",
            "external_urls": {"spotify": f"https://open.spotify.com/{kind}/{cid}"},
        }
    return (
        200,
        {
            "device": fake.devices[active].as_json(True),
            "repeat_state": "off",
            "shuffle_state": pb.shuffle,
            "context": context,
            "timestamp": int(time.time() * 1000),
            "progress_ms": 1000,
            "is_playing": pb.is_playing,
            "currently_playing_type": "track",
            "item": {"type": "track", "uri": f"spotify:track:{pb.track:022d}"},
            "actions": {"disallows": {"resuming": pb.is_playing}},
        },
        {},
    )


def config_for(fake: FakeSpotify, state_dir: Path, **sections: dict[str, Any]) -> Config:
    """A Config pointed at `fake`, with `sections` ({section: {key: value}}) applied."""
    changes: dict[str, dict[str, Any]] = {
        "spotify": {
            "client_id": fake.client_id,
            "api_url": fake.api_url,
            "accounts_url": fake.base_url,
        },
        "paths": {"state_dir": str(state_dir)},
        "player": {"kind": "spotify"},
    }
    for name, table in sections.items():
        changes.setdefault(name, {}).update(table)
    return apply_changes(Config(), changes)


def link(fake: FakeSpotify, config: Config) -> None:
    """Log the device in to `fake` through the paste flow, as a user would."""
    from device.spotify_auth import SpotifyAuth  # the code under test, not the fake's

    auth = SpotifyAuth(config, config.state_dir())
    auth.finish_login(fake.consent(auth.begin_login(LOOPBACK_REDIRECT)))


@pytest.fixture
def fake_spotify() -> Iterator[FakeSpotify]:
    fake = FakeSpotify()
    fake.start()
    yield fake
    fake.stop()
