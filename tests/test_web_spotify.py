"""The Spotify pages against the fake Spotify server: account link, speaker, playlists."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from device.config import Config
from device.spotify import SpotifyService
from device.spotify_auth import SpotifyAuth
from tests.fake_spotify import CLIENT_ID, FakeSpotify
from tests.web_site import WebSite, build_site
from web_config.spotify_pages import SUGGESTED_SEARCHES, SpotifyLink

_AUTHORIZE = re.compile(r'<a href="([^"]+)" target="_blank"[^>]*data-authorize>')


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def spotify_site(tmp_path: Path, fake_spotify: FakeSpotify, slept: list[float]) -> WebSite:
    """A set-up, logged-in device whose Spotify is the fake; test plays do not really wait."""

    def factory(config: Config, state_dir: Path) -> SpotifyLink:
        return SpotifyLink(
            SpotifyAuth(config, state_dir), SpotifyService(config, state_dir, sleep=slept.append)
        )

    site = build_site(
        tmp_path,
        factory,
        spotify={"api_url": fake_spotify.api_url, "accounts_url": fake_spotify.base_url},
    )
    site.set_password()
    return site


def paste_login(site: WebSite, fake: FakeSpotify) -> str:
    """The paste flow as a user does it; returns the page the device then shows."""
    page = site.text("/spotify?flow=paste")
    authorize_url = _AUTHORIZE.search(page)
    assert authorize_url, "the page links to Spotify's login"
    address = fake.consent(authorize_url.group(1).replace("&amp;", "&"))
    answer = site.post("/spotify/paste", {"address": address}, follow_redirects=True)
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def test_instructions_name_both_redirect_uris(spotify_site: WebSite) -> None:
    page = spotify_site.text("/spotify")
    assert "<code>https://localhost:8443/callback</code>" in page
    assert "<code>http://127.0.0.1:8888/callback</code>" in page
    assert "Not linked yet" in page


def test_login_needs_a_client_id_first(spotify_site: WebSite) -> None:
    answer = spotify_site.client.get("/spotify?flow=paste")
    assert answer.status_code == 400
    assert "Enter the client id of your Spotify app first." in answer.get_data(as_text=True)


def test_client_id_is_saved(spotify_site: WebSite) -> None:
    answer = spotify_site.post("/spotify", {"spotify.client_id": f" {CLIENT_ID} "})
    assert answer.status_code == 302
    assert spotify_site.controller.config.spotify.client_id == CLIENT_ID
    assert f'value="{CLIENT_ID}"' in spotify_site.text("/spotify"), "not a secret: shown"


def test_paste_flow_links_the_account(spotify_site: WebSite, fake_spotify: FakeSpotify) -> None:
    spotify_site.post("/spotify", {"spotify.client_id": CLIENT_ID})
    page = paste_login(spotify_site, fake_spotify)
    assert "Linked to Ann. The player now plays on Spotify. Next: choose the speaker." in page
    assert spotify_site.controller.config.player.kind == "spotify"
    assert spotify_site.controller.status.get("spotify_state") == "linked as Ann"
    account = spotify_site.text("/spotify")
    assert "<strong>Ann</strong>" in account
    assert "<dt>Premium</dt><dd>yes" in account


def test_a_free_account_is_told_it_needs_premium(
    spotify_site: WebSite, fake_spotify: FakeSpotify
) -> None:
    fake_spotify.user["product"] = "free"
    spotify_site.post("/spotify", {"spotify.client_id": CLIENT_ID})
    paste_login(spotify_site, fake_spotify)
    assert "no (free): Spotify lets only Premium accounts control playback" in spotify_site.text(
        "/spotify"
    )


def test_a_wrong_pasted_address_says_why(spotify_site: WebSite) -> None:
    spotify_site.post("/spotify", {"spotify.client_id": CLIENT_ID})
    answer = spotify_site.post(
        "/spotify/paste", {"address": "http://127.0.0.1:8888/callback"}, follow_redirects=True
    )
    assert "Not linked: That address has no login code in it" in answer.get_data(as_text=True)
    assert spotify_site.controller.status.get("spotify_state") == "not linked"


def test_https_flow_sends_the_browser_to_spotify_with_the_callback(
    spotify_site: WebSite, fake_spotify: FakeSpotify
) -> None:
    spotify_site.post("/spotify", {"spotify.client_id": CLIENT_ID})
    answer = spotify_site.post("/spotify/login")
    assert answer.status_code == 302
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}" == fake_spotify.base_url
    assert parse_qs(target.query)["redirect_uri"] == ["https://localhost:8443/callback"]


def test_logout_deletes_the_tokens(spotify_site: WebSite, fake_spotify: FakeSpotify) -> None:
    spotify_site.post("/spotify", {"spotify.client_id": CLIENT_ID})
    paste_login(spotify_site, fake_spotify)
    spotify_site.post("/spotify/logout")
    assert not (spotify_site.state_dir / "spotify_token.json").exists()
    assert "Not linked yet" in spotify_site.text("/spotify")
    assert spotify_site.controller.status.get("spotify_state") == "not linked"


@pytest.fixture
def linked(spotify_site: WebSite, fake_spotify: FakeSpotify) -> WebSite:
    spotify_site.post("/spotify", {"spotify.client_id": CLIENT_ID})
    paste_login(spotify_site, fake_spotify)
    return spotify_site


def test_speakers_are_listed_chosen_and_tested(
    linked: WebSite, fake_spotify: FakeSpotify, slept: list[float]
) -> None:
    fake_spotify.add_device("Kitchen", "kitchen0001")
    fake_spotify.add_device("Living Room", "living0002")
    page = linked.text("/speaker")
    assert "Kitchen" in page and "Living Room" in page
    linked.post("/speaker", {"device": "living0002"})
    spotify = linked.controller.config.spotify
    assert (spotify.device_name, spotify.device_id) == ("Living Room", "living0002")
    answer = linked.post("/speaker/test", follow_redirects=True)
    assert "Played the current queue on Living Room for 5 s." in answer.get_data(as_text=True)
    assert slept == [5.0]
    assert fake_spotify.calls("PUT", "/v1/me/player/pause"), "the test ends paused"


def test_a_speaker_that_left_the_list_is_not_saved(
    linked: WebSite, fake_spotify: FakeSpotify
) -> None:
    fake_spotify.add_device("Kitchen", "kitchen0001")
    answer = linked.post("/speaker", {"device": "gone0003"})
    assert answer.status_code == 400
    assert "That speaker is no longer listed" in answer.get_data(as_text=True)
    assert linked.controller.config.spotify.device_name == ""


def test_speaker_page_reports_a_spotify_failure(linked: WebSite, fake_spotify: FakeSpotify) -> None:
    fake_spotify.fail_next("GET", "/v1/me/player/devices", 503, message="Service unavailable")
    page = linked.text("/speaker")
    assert "Spotify failed (HTTP 503)" in page
    assert "No speakers found." in page


def test_playlist_search_and_choice(linked: WebSite, fake_spotify: FakeSpotify) -> None:
    uri = fake_spotify.add_playlist("Sunny Morning")
    fake_spotify.add_playlist("Rainy Evening")
    page = linked.text("/playlists?emotion=happy&q=sunny")
    results = page[page.index('data-results="happy"') :]
    assert "Sunny Morning" in results and "Rainy Evening" not in results
    linked.post("/playlists", {"emotion": "happy", "link": uri})
    assert linked.controller.config.playlists.happy == uri
    preview = linked.text("/playlists")
    assert '<div class="preview" data-preview="happy">' in preview
    assert "<strong>Sunny Morning</strong>" in preview


def test_a_pasted_link_is_turned_into_its_uri(linked: WebSite, fake_spotify: FakeSpotify) -> None:
    uri = fake_spotify.add_playlist("Blue")
    pid = uri.rpartition(":")[2]
    linked.post(
        "/playlists", {"emotion": "sad", "link": f"https://open.spotify.com/playlist/{pid}?si=abc"}
    )
    assert linked.controller.config.playlists.sad == uri
    linked.post("/playlists", {"emotion": "sad", "link": ""})
    assert linked.controller.config.playlists.sad == "", "empty removes it"


def test_a_bad_link_is_refused_beside_its_emotion(linked: WebSite) -> None:
    answer = linked.post("/playlists", {"emotion": "fear", "link": "https://example.com/x"})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    fear = page[page.index('id="fear"') : page.index('id="surprise"')]
    assert "not a Spotify playlist, album, artist or show" in fear
    assert linked.controller.config.playlists.fear == ""


def test_strategy_is_explained_with_the_current_settings(linked: WebSite) -> None:
    linked.controller.update_settings({"mood": {"dwell_s": 15.0, "min_switch_interval_s": 180.0}})
    page = linked.text("/playlists")
    assert "has held for 15 s" in page
    assert "at most once every\n  3.0 min" in page


def test_each_search_box_starts_with_a_sensible_suggestion(linked: WebSite) -> None:
    """Defaults are searches the household's own app can run, not hard-coded playlists."""
    page = linked.text("/playlists")
    for emotion, query in SUGGESTED_SEARCHES.items():
        assert f'id="q-{emotion}" value="{query}"' in page
