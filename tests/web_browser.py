"""A real headless Chromium for the setup page's tests, and the whole setup as a user does it."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as until
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import REPO, Broker
from tests.fake_spotify import CLIENT_ID, FakeSpotify
from tests.web_site import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = REPO / "test-artifacts/screenshots"
PHONE = (412, 915)  # a common Android phone's viewport, CSS pixels
WAIT_S = 15.0


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """Debian's Chromium, headless, phone-sized, with a fresh profile; nothing is downloaded."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            pytest.fail(f"{binary} is missing: `make setup-test` installs chromium-driver")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not fetch a driver
    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        # What a user does once at the warning: accept the device's self-signed certificate
        # (the HTTPS login callback's).
        "--ignore-certificate-errors",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    # A phone's screen: its width, overlay scrollbars, touch, the page's viewport meta.
    options.add_experimental_option(
        "mobileEmulation",
        {
            "deviceMetrics": {
                "width": PHONE[0],
                "height": PHONE[1],
                "pixelRatio": 1.0,
                "touch": True,
                "mobile": True,
            }
        },
    )
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class SetupChoices:
    """What the setup picks, so a test can check the device acts on it."""

    speaker: str
    happy_playlist: str  # its context URI


def replaced(element: WebElement) -> bool:
    """Whether `element`'s page has gone. Chromium reports a replaced document either as a
    stale element or as "Node with given id does not belong to the document"."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as err:
        if "does not belong to the document" in str(err):
            return True
        raise
    return False


class SetupWalk:
    """Drives the setup page like a person on a phone, saving a screenshot of each page."""

    def __init__(self, driver: WebDriver, base_url: str, shots: Path = SCREENSHOTS) -> None:
        self.driver = driver
        self.base_url = base_url
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    def wait(self) -> WebDriverWait[WebDriver]:
        return WebDriverWait(self.driver, WAIT_S)

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> WebElement:
        return self.wait().until(until.presence_of_element_located((By.CSS_SELECTOR, css)))

    def type(self, css: str, text: str) -> None:
        box = self.find(css)
        box.clear()
        box.send_keys(text)

    def submit(self, css: str) -> None:
        """Click a submit button and wait for the next page to replace this one."""
        self.click_to_next_page(self.find(css))

    def click_to_next_page(self, button: WebElement) -> None:
        old = self.driver.find_element(By.TAG_NAME, "html")
        button.click()
        self.wait().until(lambda _driver: replaced(old))

    def notice(self) -> str:
        return str(self.find("p.notice").text)

    def screenshot(self, name: str) -> Path:
        """The whole page, top to bottom, at phone width."""
        shot = self.driver.execute_cdp_cmd(  # type: ignore[attr-defined]
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        path = self.shots / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def first_run(self, setup_code: str) -> None:
        self.open("/")
        self.find("input[name=code]")
        assert self.driver.current_url.endswith("/setup")
        self.screenshot("01-first-run")
        self.type("#code", setup_code)
        self.type("#password", PASSWORD)
        self.type("#password2", PASSWORD)
        self.submit("#setup-form button[type=submit]")
        assert "Password set." in self.notice()

    def link_spotify(self) -> None:
        """Client id, then the copy-and-paste login, in a second tab as on a phone."""
        self.screenshot("02-spotify-start")
        self.type("#spotify\\.client_id", CLIENT_ID)
        self.submit("form[action='/spotify'] button")
        self.find("#login a.button").click()
        authorize = self.find("a[data-authorize]")
        self.screenshot("03-spotify-paste")
        tabs = set(self.driver.window_handles)
        authorize.click()
        self.wait().until(lambda d: len(d.window_handles) > len(tabs))
        setup_tab = self.driver.current_window_handle
        (spotify_tab,) = set(self.driver.window_handles) - tabs
        self.driver.switch_to.window(spotify_tab)
        # Spotify sends the browser to the loopback address, where nothing answers.
        self.wait().until(lambda d: "code=" in d.current_url)
        address = self.driver.current_url
        self.driver.close()
        self.driver.switch_to.window(setup_tab)
        self.type("#address", address)
        self.submit("form[action='/spotify/paste'] button")
        assert "Linked to Ann." in self.notice()

    def choose_speaker(self, name: str) -> None:
        for option in self.driver.find_elements(By.CSS_SELECTOR, "ul.choices li"):
            if name in option.text:
                option.find_element(By.CSS_SELECTOR, "input[type=radio]").click()
        self.screenshot("04-speaker")
        self.submit("#speaker-form button[type=submit]")
        assert f"Speaker: {name}." in self.notice()
        self.submit("form[action='/speaker/test'] button")
        assert re.search(rf"Played .* on {re.escape(name)} for 5 s\.", self.notice())

    def choose_playlist(self, emotion: str, query: str, name: str) -> None:
        self.open("/playlists")
        self.type(f"#q-{emotion}", query)
        self.submit(f"#{emotion} form.search button")
        results = self.find(f"ul[data-results={emotion}]")
        for result in results.find_elements(By.CSS_SELECTOR, "li"):
            if name in result.text:
                self.screenshot("05-playlists-search")
                self.click_to_next_page(result.find_element(By.CSS_SELECTOR, "button"))
                break
        else:
            raise AssertionError(f"{name} not among the results for {query!r}")
        assert f"{emotion.title()}: saved." in self.notice()
        assert name in self.find(f"[data-preview={emotion}]").text
        self.screenshot("06-playlists-chosen")

    def set_up_mqtt(self, broker: Broker) -> None:
        self.open("/mqtt")
        self.type("#device\\.name", "Living Room")
        self.find("#mqtt\\.enabled").click()
        self.type("#mqtt\\.host", "127.0.0.1")
        self.type("#mqtt\\.port", str(broker.port))
        self.find("button[data-test-connection]").click()
        self.wait().until(
            lambda d: "Connected to" in d.find_element(By.CSS_SELECTOR, "[data-test-result]").text
        )
        self.screenshot("07-mqtt")
        self.submit("#mqtt-form button[type=submit]")
        assert self.notice() == "Saved."

    def look_around(self) -> None:
        """The pages not changed by the setup, for the record."""
        self.open("/behaviour")
        self.find("#mood\\.dwell_s")
        self.screenshot("08-behaviour")
        self.open("/")
        self.wait().until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-status=version]").text)
        self.screenshot("09-status")


def complete_setup(
    driver: WebDriver, base_url: str, setup_code: str, fake: FakeSpotify, broker: Broker
) -> SetupChoices:
    """The whole first setup: password, Spotify (paste flow), speaker, happy playlist, MQTT.

    `fake` must list a speaker and a playlist first (`add_device`, `add_playlist`).
    """
    speaker = next(iter(fake.devices.values())).name
    playlist_uri, playlist = next(
        (f"spotify:playlist:{pid}", data["name"]) for pid, data in fake.playlists.items()
    )
    walk = SetupWalk(driver, base_url)
    walk.first_run(setup_code)
    walk.link_spotify()
    walk.choose_speaker(speaker)
    walk.choose_playlist("happy", playlist.split()[0], playlist)
    walk.set_up_mqtt(broker)
    walk.look_around()
    return SetupChoices(speaker=speaker, happy_playlist=playlist_uri)
