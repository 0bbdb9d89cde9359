"""The setup page's security: login everywhere, CSRF, cookies, rate limit, secrets kept back."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.web_site import PASSWORD, WebSite
from web_config import auth

PAGES = ("/", "/spotify", "/speaker", "/playlists", "/mqtt", "/behaviour", "/password")
APIS = ("/api/status", "/api/timeline")


@pytest.mark.parametrize("path", PAGES)
def test_before_setup_every_page_leads_to_first_run(fresh_site: WebSite, path: str) -> None:
    answer = fresh_site.client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/setup"


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_login(site: WebSite, path: str) -> None:
    """A page readable without logging in would show the household's settings to anyone."""
    site.post("/logout")
    answer = site.client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", APIS)
def test_every_api_needs_a_login(site: WebSite, path: str) -> None:
    site.post("/logout")
    answer = site.client.get(path)
    assert answer.status_code == 401
    assert answer.json == {"error": "Log in first."}


def test_first_run_needs_the_setup_code(fresh_site: WebSite) -> None:
    """Without it, whoever reached the page first on the network would own the device."""
    auth.ensure_setup_code(fresh_site.state_dir)
    answer = fresh_site.post(
        "/setup", {"code": "WXYZ-2345", "password": PASSWORD, "password2": PASSWORD}
    )
    assert answer.status_code == 400
    assert "This is not the setup code" in answer.get_data(as_text=True)
    assert not auth.password_is_set(fresh_site.state_dir)


def test_first_run_refuses_mismatched_passwords(fresh_site: WebSite) -> None:
    code = auth.ensure_setup_code(fresh_site.state_dir)
    assert code
    answer = fresh_site.post(
        "/setup", {"code": code, "password": PASSWORD, "password2": PASSWORD + "x"}
    )
    assert answer.status_code == 400
    assert "The two passwords differ." in answer.get_data(as_text=True)
    assert not auth.password_is_set(fresh_site.state_dir)


def test_first_run_is_closed_once_the_password_is_set(site: WebSite) -> None:
    assert site.client.get("/setup").headers["Location"] == "/login"
    answer = site.post(
        "/setup", {"code": "x", "password": "another password", "password2": "another password"}
    )
    assert answer.status_code == 302
    assert auth.password_matches(site.state_dir, PASSWORD)


@pytest.mark.parametrize("path", ["/mqtt", "/behaviour", "/spotify", "/logout", "/login"])
def test_a_form_post_without_csrf_token_is_refused(site: WebSite, path: str) -> None:
    """Another site's page could otherwise make a logged-in browser change the settings."""
    before = site.controller.config
    answer = site.client.post(
        path,
        data={
            "mqtt.host": "evil.example",
            "mqtt.port": "1883",
            "spotify.client_id": "x",
            "mood.dwell_s": "1",
        },
    )
    assert answer.status_code == 400
    assert "Reload the page and try again" in answer.get_data(as_text=True)
    assert site.controller.config == before


def test_a_wrong_csrf_token_is_refused(site: WebSite) -> None:
    answer = site.client.post("/mqtt", data={"csrf_token": "guessed", "mqtt.host": "evil"})
    assert answer.status_code == 400
    assert site.controller.config.mqtt.host == "localhost"


def test_a_json_post_needs_the_csrf_header(site: WebSite) -> None:
    refused = site.client.post("/api/control", json={"autoplay": False})
    assert refused.status_code == 400
    assert site.controller.config.player.autoplay is True
    accepted = site.client.post(
        "/api/control", json={"autoplay": False}, headers={"X-CSRF-Token": site.csrf()}
    )
    assert accepted.status_code == 200
    assert site.controller.config.player.autoplay is False


def test_session_cookie_is_httponly_and_samesite_strict(fresh_site: WebSite) -> None:
    code = auth.ensure_setup_code(fresh_site.state_dir)
    answer = fresh_site.post(
        "/setup", {"code": code or "", "password": PASSWORD, "password2": PASSWORD}
    )
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("moodmelody_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie


def test_login_starts_a_new_session(site: WebSite) -> None:
    """A session id (and CSRF token) fixed before login must not survive it."""
    site.post("/logout")
    before = site.csrf()
    site.log_in()
    assert site.csrf() != before


def test_wrong_passwords_lock_the_client_out(site: WebSite) -> None:
    site.post("/logout")
    for _ in range(4):
        answer = site.post("/login", {"password": "wrong password"})
        assert answer.status_code == 401
        assert "Wrong password." in answer.get_data(as_text=True)
    answer = site.post("/login", {"password": "wrong password"})
    assert "Too many wrong attempts: try again in 60 s." in answer.get_data(as_text=True)
    answer = site.log_in()
    assert answer.status_code == 401, "even the right password waits out the lockout"
    assert site.client.get("/").status_code == 302


def test_login_returns_to_the_page_asked_for_but_never_off_site(site: WebSite) -> None:
    site.post("/logout")
    assert site.post("/login?next=/mqtt", {"password": PASSWORD}).headers["Location"] == "/mqtt"
    site.post("/logout")
    answer = site.post("/login?next=//evil.example/x", {"password": PASSWORD})
    assert answer.headers["Location"] == "/"


def test_secrets_never_reach_the_browser(site: WebSite) -> None:
    """The MQTT password and the Spotify tokens must appear in no page and no API answer."""
    mqtt_password = "broker-secret-1234"
    site.controller.update_settings({"mqtt": {"password": mqtt_password}})
    tokens = {
        "access_token": "ACCESS-TOKEN-abc",
        "refresh_token": "REFRESH-TOKEN-xyz",
        "expires_at": 9e9,
        "consent_at": 1.7e9,
        "scope": "",
        "user": {"id": "ann", "display_name": "Ann", "product": "premium"},
    }
    (site.state_dir / "spotify_token.json").write_text(json.dumps(tokens))
    for path in (*PAGES, *APIS):
        answer = site.client.get(path)
        assert answer.status_code == 200, path
        body = answer.get_data(as_text=True)
        for secret in (mqtt_password, "ACCESS-TOKEN-abc", "REFRESH-TOKEN-xyz"):
            assert secret not in body, f"{secret} leaked on {path}"
    assert "Ann" in site.text("/spotify"), "the account itself is shown"


def test_pages_carry_protective_headers(site: WebSite) -> None:
    answer = site.client.get("/")
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"


NEW_PASSWORD = "a longer new passphrase"


def test_changing_the_password_logs_out_every_other_browser(site: WebSite) -> None:
    other = replace(site, client=site.app.test_client())  # a second browser
    other.log_in()
    assert other.client.get("/").status_code == 200

    answer = site.post(
        "/password", {"current": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert answer.status_code == 302
    assert site.client.get("/").status_code == 200, "the browser that changed it stays in"
    assert other.client.get("/").headers["Location"].startswith("/login")
    assert "Log out" not in other.text("/login"), "no menu for a session that ended"
    assert not auth.password_matches(site.state_dir, PASSWORD)
    assert auth.password_matches(site.state_dir, NEW_PASSWORD)


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        (
            {"current": "not it", "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
            "current",
            "This is not the current password.",
        ),
        (
            {"current": PASSWORD, "password": NEW_PASSWORD, "password2": PASSWORD},
            "password2",
            "The two passwords differ.",
        ),
        (
            {"current": PASSWORD, "password": "short", "password2": "short"},
            "password",
            "Use at least 8 characters.",
        ),
    ],
)
def test_a_refused_password_change_keeps_the_old_one(
    site: WebSite, form: dict[str, str], field: str, message: str
) -> None:
    answer = site.post("/password", form)
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert f'name="{field}" id="{field}"' in page and message in page
    assert auth.password_matches(site.state_dir, PASSWORD)
    assert site.client.get("/").status_code == 200, "still logged in"


def test_guessing_the_current_password_counts_towards_the_lockout(site: WebSite) -> None:
    """Else a left-open browser would be a way to brute-force the password."""
    for _ in range(5):
        answer = site.post(
            "/password", {"current": "guess", "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
        )
    assert "Too many wrong attempts" in answer.get_data(as_text=True)
    answer = site.post(
        "/password", {"current": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert answer.status_code == 400
    assert auth.password_matches(site.state_dir, PASSWORD)


def test_a_reset_password_sends_everyone_back_to_first_run(site: WebSite) -> None:
    code = auth.reset_password(site.state_dir)
    assert site.client.get("/").headers["Location"] == "/setup"
    answer = site.post(
        "/setup", {"code": code, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert answer.status_code == 302
    assert auth.password_matches(site.state_dir, NEW_PASSWORD)
