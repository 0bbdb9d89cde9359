"""The fake Spotify service answers like the documented Web API and accounts service.

If these fail, the device's Spotify tests would be testing against the wrong thing.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.fake_spotify import ALL_SCOPES, LOOPBACK_REDIRECT, FakeSpotify


def _authorize(fake: FakeSpotify, verifier: str, scope: str = ALL_SCOPES, **extra: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "client_id": fake.client_id,
        "response_type": "code",
        "redirect_uri": LOOPBACK_REDIRECT,
        "code_challenge_method": "S256",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "state": "s1",
        "scope": scope,
    }
    query.update(extra)
    return f"{fake.base_url}/authorize?{urlencode(query)}"


def _token(fake: FakeSpotify, **form: str) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/api/token", data={"client_id": fake.client_id, **form}, timeout=5
    )


def _login(fake: FakeSpotify, scope: str = ALL_SCOPES) -> dict[str, Any]:
    verifier = secrets.token_urlsafe(50)
    back = parse_qs(urlsplit(fake.consent(_authorize(fake, verifier, scope))).query)
    answer = _token(
        fake,
        grant_type="authorization_code",
        code=back["code"][0],
        redirect_uri=LOOPBACK_REDIRECT,
        code_verifier=verifier,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _api(fake: FakeSpotify, method: str, path: str, token: str, **kw: Any) -> requests.Response:
    return requests.request(
        method,
        f"{fake.api_url}{path}",
        timeout=5,
        headers={"Authorization": f"Bearer {token}"},
        **kw,
    )


def test_authorize_redirects_back_with_code_and_state(fake_spotify: FakeSpotify) -> None:
    """Consent sends the browser to redirect_uri with code and the same state; an
    unregistered redirect URI is refused, as Spotify does (INVALID_CLIENT)."""
    location = fake_spotify.consent(_authorize(fake_spotify, "v" * 50))
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == LOOPBACK_REDIRECT
    assert parse_qs(parts.query)["state"] == ["s1"] and parse_qs(parts.query)["code"]
    bad = requests.get(
        _authorize(fake_spotify, "v" * 50, redirect_uri="http://evil/cb"),
        allow_redirects=False,
        timeout=5,
    )
    assert bad.status_code == 400 and "Invalid redirect URI" in bad.text
    fake_spotify.deny_consent = True
    denied = parse_qs(urlsplit(fake_spotify.consent(_authorize(fake_spotify, "v" * 50))).query)
    assert denied == {"error": ["access_denied"], "state": ["s1"]}


def test_code_exchange_checks_the_pkce_verifier_and_is_single_use(
    fake_spotify: FakeSpotify,
) -> None:
    """A wrong code_verifier gets invalid_grant; the right one gets tokens once only."""
    verifier = secrets.token_urlsafe(50)
    code = parse_qs(urlsplit(fake_spotify.consent(_authorize(fake_spotify, verifier))).query)
    form = {
        "grant_type": "authorization_code",
        "code": code["code"][0],
        "redirect_uri": LOOPBACK_REDIRECT,
    }
    wrong = _token(fake_spotify, code_verifier="x" * 50, **form)
    assert wrong.status_code == 400
    assert wrong.json() == {
        "error": "invalid_grant",
        "error_description": "code_verifier was incorrect",
    }
    verifier2 = secrets.token_urlsafe(50)
    code2 = parse_qs(urlsplit(fake_spotify.consent(_authorize(fake_spotify, verifier2))).query)
    form["code"] = code2["code"][0]
    ok = _token(fake_spotify, code_verifier=verifier2, **form)
    assert ok.status_code == 200
    assert set(ok.json()) == {"access_token", "token_type", "scope", "expires_in", "refresh_token"}
    again = _token(fake_spotify, code_verifier=verifier2, **form)
    assert again.json()["error"] == "invalid_grant"


def test_refresh_tokens_rotate_and_a_used_one_is_refused(fake_spotify: FakeSpotify) -> None:
    """With rotation on, each refresh returns a new refresh token and the old one dies."""
    first = _login(fake_spotify)["refresh_token"]
    answer = _token(fake_spotify, grant_type="refresh_token", refresh_token=first)
    assert answer.status_code == 200 and answer.json()["refresh_token"] != first
    reused = _token(fake_spotify, grant_type="refresh_token", refresh_token=first)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    fake_spotify.rotate_refresh_tokens = False
    second = answer.json()["refresh_token"]
    kept = _token(fake_spotify, grant_type="refresh_token", refresh_token=second)
    assert "refresh_token" not in kept.json()


def test_web_api_errors_have_the_documented_shape(fake_spotify: FakeSpotify) -> None:
    """401 without/expired token, and an injected 429 with Retry-After, use
    {"error": {"status", "message"[, "reason"]}}."""
    none = requests.get(f"{fake_spotify.api_url}me", timeout=5)
    assert none.status_code == 401
    assert none.json() == {"error": {"status": 401, "message": "No token provided"}}
    token = _login(fake_spotify)["access_token"]
    fake_spotify.fail_next("GET", "/v1/me", 429, retry_after=7, reason="QUOTA_EXCEEDED")
    limited = _api(fake_spotify, "GET", "me", token)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["error"]["reason"] == "QUOTA_EXCEEDED"
    assert _api(fake_spotify, "GET", "me", token).json()["product"] == "premium"
    fake_spotify.expire_access_tokens()
    expired = _api(fake_spotify, "GET", "me", token)
    assert expired.json()["error"] == {"status": 401, "message": "The access token expired"}


def test_player_keeps_state_across_commands(fake_spotify: FakeSpotify) -> None:
    """Nothing active: GET /me/player is 204 and play is 404 NO_ACTIVE_DEVICE; then
    play on a device makes it active; pausing twice is 403 ALREADY_PAUSED."""
    token = _login(fake_spotify)["access_token"]
    speaker = fake_spotify.add_device("Kitchen")
    uri = fake_spotify.add_playlist("Calm")
    assert _api(fake_spotify, "GET", "me/player", token).status_code == 204
    nobody = _api(fake_spotify, "PUT", "me/player/play", token, json={"context_uri": uri})
    assert nobody.status_code == 404
    assert nobody.json()["error"]["reason"] == "NO_ACTIVE_DEVICE"
    play = _api(
        fake_spotify,
        "PUT",
        f"me/player/play?device_id={speaker.id}",
        token,
        json={"context_uri": uri},
    )
    assert play.status_code == 204
    state = _api(fake_spotify, "GET", "me/player", token).json()
    assert state["is_playing"] and state["context"]["uri"] == uri
    assert state["device"]["id"] == speaker.id
    devices = _api(fake_spotify, "GET", "me/player/devices", token).json()["devices"]
    assert [(d["name"], d["is_active"]) for d in devices] == [("Kitchen", True)]
    assert _api(fake_spotify, "PUT", "me/player/pause", token).status_code == 204
    twice = _api(fake_spotify, "PUT", "me/player/pause", token)
    assert twice.status_code == 403 and twice.json()["error"]["reason"] == "ALREADY_PAUSED"
    unknown = _api(fake_spotify, "PUT", "me/player", token, json={"device_ids": ["nope"]})
    assert unknown.status_code == 404


def test_free_accounts_and_missing_scopes_are_refused(fake_spotify: FakeSpotify) -> None:
    """Player commands need Premium (403 PREMIUM_REQUIRED) and the modify scope; /me
    leaves out `product` without user-read-private."""
    narrow = _login(fake_spotify, scope="user-read-playback-state")["access_token"]
    speaker = fake_spotify.add_device("Kitchen")
    refused = _api(fake_spotify, "PUT", f"me/player/play?device_id={speaker.id}", narrow)
    assert refused.status_code == 403 and "scope" in refused.json()["error"]["message"]
    assert "product" not in _api(fake_spotify, "GET", "me", narrow).json()
    fake_spotify.user["product"] = "free"
    token = _login(fake_spotify)["access_token"]
    free = _api(fake_spotify, "PUT", f"me/player/play?device_id={speaker.id}", token)
    assert free.json()["error"]["reason"] == "PREMIUM_REQUIRED"


def test_search_and_playlists(fake_spotify: FakeSpotify) -> None:
    """Search type=playlist pages its matches; a playlist has name, images, owner and
    its tracks at /items (the removed /tracks is 403 for development-mode apps)."""
    token = _login(fake_spotify)["access_token"]
    uri = fake_spotify.add_playlist("Rainy Day Jazz", tracks=3)
    fake_spotify.add_playlist("Workout")
    found = _api(
        fake_spotify,
        "GET",
        "search",
        token,
        params={"q": "rainy jazz", "type": "playlist", "limit": 5},
    ).json()
    assert [p["uri"] for p in found["playlists"]["items"]] == [uri]
    pid = uri.rsplit(":", 1)[1]
    playlist = _api(fake_spotify, "GET", f"playlists/{pid}", token).json()
    assert playlist["name"] == "Rainy Day Jazz" and playlist["owner"]["id"] == "ann"
    assert playlist["images"][0]["url"] and playlist["items"]["total"] == 3
    items = _api(fake_spotify, "GET", f"playlists/{pid}/items", token).json()
    assert len(items["items"]) == 3 and items["items"][0]["item"]["type"] == "track"
    assert _api(fake_spotify, "GET", f"playlists/{pid}/tracks", token).status_code == 403
    assert _api(fake_spotify, "GET", "playlists/0000000000", token).status_code == 404


def test_network_down_refuses_connections_until_up(fake_spotify: FakeSpotify) -> None:
    """network_down() closes the port (connection refused); network_up() reopens it."""
    fake_spotify.network_down()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{fake_spotify.api_url}me", timeout=2)
    fake_spotify.network_up()
    assert requests.get(f"{fake_spotify.api_url}me", timeout=2).status_code == 401
    assert [r.path for r in fake_spotify.requests] == ["/v1/me"]
