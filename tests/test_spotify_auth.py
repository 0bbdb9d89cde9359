"""The account link: PKCE login (paste and HTTPS callback), token storage and refresh."""

from __future__ import annotations

import io
import json
import logging
import re
import stat
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from device.callback_server import KEY_FILE, start_callback_server
from device.spotify_auth import (
    LOGIN_FILE,
    LOOPBACK_REDIRECT,
    REFRESH_TOKEN_LIFETIME_S,
    TOKEN_FILE,
    AuthUnavailable,
    LinkError,
    LoginError,
    SpotifyAuth,
    login_command,
    pkce_challenge,
)
from tests.conftest import free_port
from tests.fake_spotify import FakeSpotify, config_for

T0 = 1_790_000_000.0  # a fixed "now" for tests that move the clock


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _auth(fake: FakeSpotify, tmp_path: Path, clock: Clock | None = None) -> SpotifyAuth:
    return SpotifyAuth(config_for(fake, tmp_path), tmp_path, clock or Clock())


def _login(fake: FakeSpotify, auth: SpotifyAuth) -> None:
    auth.finish_login(fake.consent(auth.begin_login(LOOPBACK_REDIRECT)))


def _saved(tmp_path: Path) -> dict[str, object]:
    return dict(json.loads((tmp_path / TOKEN_FILE).read_text()))


def test_authorization_address_uses_pkce_s256_and_the_least_scopes(
    fake_spotify: FakeSpotify, tmp_path: Path
) -> None:
    """The address carries an S256 challenge of the kept verifier, a state, and only the
    three playback scopes; the pending login file is 0600."""
    url = _auth(fake_spotify, tmp_path).begin_login(LOOPBACK_REDIRECT)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{fake_spotify.base_url}/authorize?")
    assert query["code_challenge_method"] == "S256" and query["response_type"] == "code"
    pending = json.loads((tmp_path / LOGIN_FILE).read_text())
    assert pkce_challenge(pending[query["state"]]["verifier"]) == query["code_challenge"]
    assert set(query["scope"].split()) == {
        "user-read-playback-state",
        "user-modify-playback-state",
        "user-read-private",
    }
    assert stat.S_IMODE((tmp_path / LOGIN_FILE).stat().st_mode) == 0o600


def test_paste_login_saves_tokens_0600_and_records_consent(
    fake_spotify: FakeSpotify, tmp_path: Path
) -> None:
    """finish_login on the pasted address stores tokens (0600), the account and the
    consent date; the refresh deadline is consent + 182 days."""
    auth = _auth(fake_spotify, tmp_path)
    account = auth.finish_login(fake_spotify.consent(auth.begin_login(LOOPBACK_REDIRECT)))
    assert (account.display_name, account.user_id, account.premium) == ("Ann", "ann", True)
    assert account.consent_at == T0 and account.deadline == T0 + REFRESH_TOKEN_LIFETIME_S
    assert account.days_left(T0 + 2 * 86400) == 180
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600
    assert _saved(tmp_path)["refresh_token"] in fake_spotify.tokens.refresh
    assert auth.account() == account
    auth.logout()
    assert auth.account() is None and not (tmp_path / TOKEN_FILE).exists()


def test_login_accepts_a_bare_query_string(fake_spotify: FakeSpotify, tmp_path: Path) -> None:
    """Users may paste only `?code=..&state=..`; that is enough."""
    auth = _auth(fake_spotify, tmp_path)
    address = fake_spotify.consent(auth.begin_login(LOOPBACK_REDIRECT))
    assert auth.finish_login("  ?" + urlsplit(address).query + "\n").user_id == "ann"


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda a: re.sub(r"state=[^&]+", "state=forged", a), "not started here"),
        (lambda a: a.split("?")[0], "no login code"),
        (lambda a: a + "&error=server_error", "did not link"),
    ],
)
def test_bad_callbacks_are_refused_with_a_clear_message(
    fake_spotify: FakeSpotify, tmp_path: Path, mangle: object, message: str
) -> None:
    """A forged state, a missing code or an error answer raise LoginError; nothing saved."""
    auth = _auth(fake_spotify, tmp_path)
    address = fake_spotify.consent(auth.begin_login(LOOPBACK_REDIRECT))
    with pytest.raises(LoginError, match=message):
        auth.finish_login(mangle(address))  # type: ignore[operator]
    assert auth.account() is None


def test_a_login_is_single_use_and_expires(fake_spotify: FakeSpotify, tmp_path: Path) -> None:
    """The same redirected address cannot be replayed; a login older than 10 min fails;
    declining on Spotify's page says so."""
    clock = Clock()
    auth = _auth(fake_spotify, tmp_path, clock)
    address = fake_spotify.consent(auth.begin_login(LOOPBACK_REDIRECT))
    auth.finish_login(address)
    with pytest.raises(LoginError, match="already used"):
        auth.finish_login(address)
    late = fake_spotify.consent(auth.begin_login(LOOPBACK_REDIRECT))
    clock.now += 601
    with pytest.raises(LoginError, match="10 minutes"):
        auth.finish_login(late)
    fake_spotify.deny_consent = True
    with pytest.raises(LoginError, match="declined"):
        auth.finish_login(fake_spotify.consent(auth.begin_login(LOOPBACK_REDIRECT)))


def test_expired_access_token_is_refreshed_and_the_new_refresh_token_saved_first(
    fake_spotify: FakeSpotify, tmp_path: Path
) -> None:
    """Past expiry, access_token() refreshes; by the time it returns, the rotated refresh
    token is on disk (the old one is already dead at Spotify)."""
    clock = Clock()
    auth = _auth(fake_spotify, tmp_path, clock)
    _login(fake_spotify, auth)
    first = auth.access_token()
    assert auth.access_token() == first and not fake_spotify.calls("POST", "/api/token")[1:]
    old_refresh = _saved(tmp_path)["refresh_token"]
    clock.now += 3600
    fresh = auth.access_token()
    assert fresh != first
    saved = _saved(tmp_path)
    assert saved["access_token"] == fresh and saved["refresh_token"] != old_refresh
    assert saved["refresh_token"] in fake_spotify.tokens.refresh
    assert old_refresh not in fake_spotify.tokens.refresh


def test_a_401_refreshes_once_even_with_two_callers(
    fake_spotify: FakeSpotify, tmp_path: Path
) -> None:
    """Two instances (daemon and setup page) both told 401 refresh only once between them;
    with single-use refresh tokens a second refresh would break the link."""
    auth_a, auth_b = _auth(fake_spotify, tmp_path), _auth(fake_spotify, tmp_path)
    _login(fake_spotify, auth_a)
    rejected = auth_a.access_token()
    fake_spotify.expire_access_tokens()
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda a=a: results.append(a.refresh_rejected(rejected)))
        for a in (auth_a, auth_b)
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(set(results)) == 1 and len(results) == 6
    assert len(fake_spotify.calls("POST", "/api/token")) == 2  # the login and one refresh
    assert auth_b.account() is not None and not auth_b.account().broken  # type: ignore[union-attr]


def test_revoked_refresh_token_asks_for_a_new_login(
    fake_spotify: FakeSpotify, tmp_path: Path
) -> None:
    """invalid_grant marks the link broken: LinkError "log in again", and no more calls."""
    clock = Clock()
    auth = _auth(fake_spotify, tmp_path, clock)
    _login(fake_spotify, auth)
    fake_spotify.revoke_refresh_tokens()
    clock.now += 7200
    with pytest.raises(LinkError, match="log in again"):
        auth.access_token()
    calls = len(fake_spotify.requests)
    with pytest.raises(LinkError):
        auth.access_token()
    assert len(fake_spotify.requests) == calls
    assert "log in again" in auth.account().broken  # type: ignore[union-attr]
    _login(fake_spotify, auth)  # a new login mends it
    assert auth.access_token()


def test_six_months_after_consent_the_login_has_expired(
    fake_spotify: FakeSpotify, tmp_path: Path
) -> None:
    """After consent + 182 days access_token() asks for a new login without calling out."""
    clock = Clock()
    auth = _auth(fake_spotify, tmp_path, clock)
    _login(fake_spotify, auth)
    clock.now += REFRESH_TOKEN_LIFETIME_S
    with pytest.raises(LinkError, match="six months"):
        auth.access_token()


def test_accounts_service_down_is_temporary(fake_spotify: FakeSpotify, tmp_path: Path) -> None:
    """Connection refused or a 503 on refresh raise AuthUnavailable and keep the link."""
    clock = Clock()
    auth = _auth(fake_spotify, tmp_path, clock)
    _login(fake_spotify, auth)
    clock.now += 7200
    fake_spotify.fail_next("POST", "/api/token", 503, error="server_error")
    with pytest.raises(AuthUnavailable, match="503"):
        auth.access_token()
    fake_spotify.network_down()
    with pytest.raises(AuthUnavailable, match="Could not reach"):
        auth.access_token()
    fake_spotify.network_up()
    assert auth.access_token() and not auth.account().broken  # type: ignore[union-attr]


def test_no_secret_reaches_the_logs(
    fake_spotify: FakeSpotify,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """At DEBUG level, a login, a refresh and an API call through spotipy log no token,
    code or verifier (spotipy logs its request headers: they are redacted)."""
    from device.spotify import SpotifyService

    caplog.set_level(logging.DEBUG)
    clock = Clock()
    auth = _auth(fake_spotify, tmp_path, clock)
    url = auth.begin_login(LOOPBACK_REDIRECT)
    verifier = next(iter(json.loads((tmp_path / LOGIN_FILE).read_text()).values()))["verifier"]
    address = fake_spotify.consent(url)
    auth.finish_login(address)
    secrets_seen = [
        verifier,
        parse_qs(urlsplit(address).query)["code"][0],
        str(_saved(tmp_path)["refresh_token"]),
        str(_saved(tmp_path)["access_token"]),
    ]
    fake_spotify.expire_access_tokens()
    fake_spotify.add_device("Kitchen")
    assert SpotifyService(config_for(fake_spotify, tmp_path), tmp_path).devices()
    secrets_seen += [str(_saved(tmp_path)["refresh_token"]), str(_saved(tmp_path)["access_token"])]
    out = capsys.readouterr()
    assert "Bearer <redacted>" in caplog.text  # spotipy's debug line was there
    for secret in secrets_seen:
        assert secret not in caplog.text and secret not in out.out + out.err


def test_login_command_reads_the_pasted_address(fake_spotify: FakeSpotify, tmp_path: Path) -> None:
    """`moodmelody login` prints the address, reads the redirected one, links, exits 0;
    rubbish pasted gives exit 1 and says why."""

    class User(io.StringIO):
        """Reads the printed address, approves, and 'pastes' where the browser went."""

        def __init__(self, out: io.StringIO, paste: str | None = None) -> None:
            super().__init__()
            self.out, self.paste = out, paste

        def readline(self, size: int | None = -1) -> str:
            url = re.search(r"(http://\S+/authorize\?\S+)", self.out.getvalue())
            assert url is not None
            return self.paste or fake_spotify.consent(url.group(1)) + "\n"

    config = config_for(fake_spotify, tmp_path)
    out = io.StringIO()
    assert login_command(config, tmp_path, User(out), out) == 0
    assert LOOPBACK_REDIRECT in out.getvalue() and "Linked as Ann, Premium" in out.getvalue()
    out = io.StringIO()
    assert login_command(config, tmp_path, User(out, "hello\n"), out) == 1
    assert "no login code" in out.getvalue()


def test_https_callback_finishes_the_login_and_returns_to_the_setup_page(
    fake_spotify: FakeSpotify, tmp_path: Path
) -> None:
    """Spotify redirects the browser to https://<device>:PORT/callback: the device's own
    HTTPS server (self-signed, key 0600) finishes the login and 303s to the setup page;
    a forged callback gets a 400 page saying why."""
    auth = _auth(fake_spotify, tmp_path)
    port = free_port()
    callback = f"https://127.0.0.1:{port}/callback"
    fake_spotify.redirect_uris.add(callback)
    server = start_callback_server(lambda: auth, f"127.0.0.1:{port}", "http://setup.example/")
    try:
        assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
        cert = str(tmp_path / "callback_cert.pem")
        address = fake_spotify.consent(auth.begin_login(callback))
        assert address.startswith(callback + "?")
        answer = requests.get(address, verify=cert, allow_redirects=False, timeout=10)
        assert answer.status_code == 303 and answer.headers["Location"] == "http://setup.example/"
        assert auth.account() is not None
        forged = requests.get(f"{callback}?code=x&state=y", verify=cert, timeout=10)
        assert forged.status_code == 400 and "not started here" in forged.text
    finally:
        server.shutdown()


@pytest.mark.slow
def test_a_real_browser_follows_the_https_login(fake_spotify: FakeSpotify, tmp_path: Path) -> None:
    """Headless Chromium opens the authorization address, is redirected to the device's
    HTTPS callback (self-signed: accepted like a user clicking through) and lands on the
    setup page, with the account linked."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    auth = _auth(fake_spotify, tmp_path)
    port = free_port()
    callback = f"https://127.0.0.1:{port}/callback"
    fake_spotify.redirect_uris.add(callback)
    setup_url = f"{fake_spotify.base_url}/setup-page"
    server = start_callback_server(lambda: auth, f"127.0.0.1:{port}", setup_url)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",
        "--disable-gpu",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.set_page_load_timeout(30)
        driver.get(auth.begin_login(callback))
        assert driver.current_url == setup_url
        account = auth.account()
        assert account is not None and account.display_name == "Ann"
    finally:
        driver.quit()
        server.shutdown()
