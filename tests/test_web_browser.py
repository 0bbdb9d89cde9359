"""The whole setup in a real headless Chromium, against the fake Spotify and a real broker."""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from device.callback_server import start_callback_server
from device.controller import Controller
from device.spotify_auth import SpotifyAuth
from tests.conftest import Broker, free_port
from tests.daemon_process import DaemonProcess, build_clip, write_config
from tests.fake_spotify import CLIENT_ID, FakeSpotify
from tests.waiting import wait_until
from tests.web_browser import SCREENSHOTS, SetupWalk, complete_setup
from tests.web_site import PASSWORD, make_controller
from web_config.history import COLOURS
from web_config.server import WebServer, start_web

pytestmark = pytest.mark.slow


@pytest.fixture
def served(
    tmp_path: Path, fake_spotify: FakeSpotify, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[Controller, WebServer, str]]:
    """The page as the daemon serves it (start_web), with the HTTPS login callback beside it
    as the daemon wires it, and the setup code from its log."""
    callback = f"127.0.0.1:{free_port()}"
    controller = make_controller(
        tmp_path,
        spotify={
            "api_url": fake_spotify.api_url,
            "accounts_url": fake_spotify.base_url,
            "callback_listen": callback,
            "redirect_uri": f"https://{callback}/callback",
        },
        web={"listen": f"127.0.0.1:{free_port()}"},
    )
    fake_spotify.redirect_uris.add(f"https://{callback}/callback")
    with caplog.at_level(logging.WARNING, logger="web_config.server"):
        server = start_web(controller, controller.config.state_dir())
    code = re.search(r"setup code: (\w{4}-\w{4})", caplog.text)
    assert code, "the setup code is in the journal"
    login_callback = start_callback_server(
        lambda: SpotifyAuth(controller.config, controller.config.state_dir()),
        callback,
        server.url + "/spotify",
        controller.spotify_linked,
    )
    yield controller, server, code.group(1)
    login_callback.shutdown()
    server.stop()


def test_whole_setup_in_a_phone_sized_browser(
    served: tuple[Controller, WebServer, str],
    browser: WebDriver,
    fake_spotify: FakeSpotify,
    mosquitto: Broker,
) -> None:
    """If any step of the first setup broke in a real browser, a new owner would be stuck."""
    controller, server, code = served
    fake_spotify.add_device("Kitchen", "kitchen0001")
    fake_spotify.add_playlist("Sunny Morning")
    fake_spotify.add_playlist("Rainy Evening")
    controller.status.update(
        emotion="happy",
        confidence=0.74,
        present=True,
        faces=1,
        scores={"happy": 0.74, "neutral": 0.15, "sad": 0.05},
        camera_state="running",
        fps=4.9,
    )
    choices = complete_setup(browser, server.url, code, fake_spotify, mosquitto)

    saved = tomllib.loads(controller.config_path.read_text())
    assert saved["player"]["kind"] == "spotify"
    assert saved["spotify"]["device_name"] == choices.speaker == "Kitchen"
    assert saved["playlists"]["happy"] == choices.happy_playlist
    assert saved["device"]["name"] == "Living Room"
    assert (saved["mqtt"]["enabled"], saved["mqtt"]["host"], saved["mqtt"]["port"]) == (
        True,
        "127.0.0.1",
        mosquitto.port,
    )
    assert controller.config.playlists.happy == choices.happy_playlist, "live, no restart"
    assert fake_spotify.calls("PUT", "/v1/me/player/pause"), "the speaker test ran"
    shots = sorted(p.name for p in SCREENSHOTS.glob("0*.png"))
    assert len(shots) == 9, shots


def test_linking_spotify_by_the_https_callback_switches_the_player_to_spotify(
    served: tuple[Controller, WebServer, str], browser: WebDriver, fake_spotify: FakeSpotify
) -> None:
    """The callback flow once linked the account but left the player on dry-run (only the
    paste flow switched it), so nothing ever played. Log in, approve at (the stand-in)
    Spotify, come back through the device's HTTPS callback: linked, and playing on Spotify."""
    controller, server, code = served
    walk = SetupWalk(browser, server.url)
    walk.first_run(code)
    walk.type("#spotify\\.client_id", CLIENT_ID)
    walk.submit("form[action='/spotify'] button")
    walk.submit("form[action='/spotify/login'] button")
    walk.find("[data-account]")
    assert browser.current_url.startswith(server.url + "/spotify")
    walk.screenshot("spotify-linked-by-callback")
    assert "Ann" in walk.find("[data-account]").text
    assert controller.config.player.kind == "spotify"
    assert tomllib.loads(controller.config_path.read_text())["player"]["kind"] == "spotify"
    assert controller.status.get("spotify_state").startswith("linked as Ann")


def test_status_page_updates_itself(
    served: tuple[Controller, WebServer, str], browser: WebDriver
) -> None:
    """The status page polls /api/status: a new mood shows without reloading."""
    controller, server, code = served
    walk = SetupWalk(browser, server.url)
    walk.first_run(code)
    walk.open("/")
    mood = walk.find("[data-status=mood]")
    assert mood.text == "none yet"
    controller.status.update(mood="surprise", mood_reason="held 8 s")
    walk.wait().until(lambda _: mood.text == "surprise")
    toggle = walk.find("[data-control=autoplay]")
    toggle.click()
    walk.wait().until(lambda _: controller.config.player.autoplay is False)


def test_the_status_page_as_a_person_sees_it(
    served: tuple[Controller, WebServer, str], browser: WebDriver
) -> None:
    """Nobody in view: no "Correct it", no "0 %", and a link to link Spotify; then a face:
    the correction appears by itself and each score bar has its emotion's colour."""
    controller, server, code = served
    walk = SetupWalk(browser, server.url)
    walk.first_run(code)
    walk.open("/")
    correct = walk.find("[data-correct]")
    assert not correct.is_displayed()
    assert not walk.find("[data-status=confidence]").is_displayed()
    assert walk.find("[data-status=emotion]").text == "no face in view"
    link = walk.find("a[data-show-when^=spotify_state]")
    assert link.is_displayed() and link.get_attribute("href").endswith("/spotify#login")
    walk.screenshot("status-no-face")
    controller.status.update(
        faces=1,
        emotion="happy",
        confidence=0.62,
        present=True,
        scores={
            "happy": 0.62,
            "neutral": 0.15,
            "sad": 0.08,
            "angry": 0.05,
            "surprise": 0.04,
            "fear": 0.03,
            "disgust": 0.03,
        },
        mood="happy",
        mood_reason="happy held 8.0 s at 62%",
        camera_state="running",
        fps=5.0,
    )
    walk.wait().until(lambda _: correct.is_displayed())
    walk.wait().until(lambda _: walk.find("[data-score-text=disgust]").text == "3")
    colours = {}
    for meter in browser.find_elements(By.CSS_SELECTOR, "meter[data-score]"):
        pixels = cv2.imdecode(np.frombuffer(meter.screenshot_as_png, np.uint8), cv2.IMREAD_COLOR)
        b, g, r = pixels[pixels.shape[0] // 2, 1]  # the filled start of the bar
        colours[meter.get_attribute("data-score")] = f"#{r:02x}{g:02x}{b:02x}"
    assert colours == COLOURS, "each bar in its emotion's colour (as the timeline)"
    walk.screenshot("status-happy")
    walk.open("/teach")
    walk.find("form[data-confirm] button.quiet-danger")
    walk.screenshot("teach")


def test_password_change_in_the_browser(
    served: tuple[Controller, WebServer, str], browser: WebDriver
) -> None:
    """The header's Password link, the form, and the new password at the next login."""
    _, server, code = served
    walk = SetupWalk(browser, server.url)
    walk.first_run(code)
    walk.find("header a.account").click()
    walk.find("#current")
    walk.screenshot("password")
    walk.type("#current", PASSWORD)
    walk.type("#password", "a brand new passphrase")
    walk.type("#password2", "a brand new passphrase")
    walk.submit("#password-form button[type=submit]")
    assert "Password changed." in walk.notice()
    walk.submit("header .logout button")
    walk.type("#password", PASSWORD)
    walk.submit("form button[type=submit]")
    assert "Wrong password." in walk.find("p.error").text
    walk.type("#password", "a brand new passphrase")
    walk.submit("form button[type=submit]")
    walk.find("[data-status=mood]")


def test_after_the_setup_in_the_browser_the_daemon_plays_the_happy_playlist(
    browser: WebDriver, fer2013: Path, tmp_path: Path, fake_spotify: FakeSpotify, mosquitto: Broker
) -> None:
    """The issue's whole story: a fresh daemon watching a happy face, set up from the phone,
    ends up playing the playlist chosen for "happy" on the speaker chosen."""
    speaker = fake_spotify.add_device("Living Room")
    playlist = fake_spotify.add_playlist("Sunny Morning")
    clip = build_clip(tmp_path / "happy.avi", fer2013, [("happy", 6.0)], fps=10)
    web_port = free_port()
    config = (
        write_config(
            tmp_path / "config.toml",
            tmp_path / "state",
            clip,
            extra=f"""
[spotify]
api_url = "{fake_spotify.api_url}"
accounts_url = "{fake_spotify.base_url}"
callback_listen = "127.0.0.1:{free_port()}"
""",
        )
        .read_text()
        .replace("[web]\nenabled = false", f'[web]\nlisten = "127.0.0.1:{web_port}"')
    )
    (tmp_path / "config.toml").write_text(config)
    daemon = DaemonProcess.start(tmp_path / "config.toml", "--loop")
    try:
        daemon.wait_for("setup page listening")
        code = next(
            m.group(1)
            for line in daemon.read()
            if (m := re.search(r"setup code: (\w{4}-\w{4})", line))
        )
        daemon.wait_for("mood changed: no mood yet -> happy")
        complete_setup(browser, f"http://127.0.0.1:{web_port}", code, fake_spotify, mosquitto)
        wait_until(
            lambda: any(
                (r.body or {}).get("context_uri") == playlist
                and r.query.get("device_id") == speaker.id
                for r in fake_spotify.calls("PUT", "/v1/me/player/play")
            ),
            timeout=30,
            what="the happy playlist played on the chosen speaker",
        )
        assert fake_spotify.playback.context_uri == playlist
        assert daemon.terminate()[0] == 0
    finally:
        daemon.kill()
