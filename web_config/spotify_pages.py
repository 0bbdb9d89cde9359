"""The Spotify pages: the account link, the speaker, and a playlist per emotion."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for

from device import EMOTIONS
from device.config import Config
from device.spotify import SpotifyService, SpotifyServiceError, link_label, parse_spotify_link
from device.spotify_auth import LoginError, SpotifyAuth
from web_config import forms
from web_config.app import site
from web_config.pages import sentence

logger = logging.getLogger(__name__)

blueprint = Blueprint("spotify", __name__)

TEST_PLAY_S = 5.0


@dataclass(frozen=True)
class SpotifyLink:
    """The account link and the Web API client, made for the settings of one request."""

    auth: SpotifyAuth
    service: SpotifyService

    def close(self) -> None:
        self.service.close()


def real_spotify(config: Config, state_dir: Path) -> SpotifyLink:
    return SpotifyLink(SpotifyAuth(config, state_dir), SpotifyService(config, state_dir))


def _link() -> contextlib.closing[SpotifyLink]:
    return contextlib.closing(site().spotify_factory(site().controller.config, site().state_dir))


def _host() -> str:
    return urlsplit(f"//{request.host}").hostname or "moodmelody.local"


def _https_redirect(link: SpotifyLink) -> str:
    return site().controller.config.spotify.redirect_uri or link.auth.redirect_uris(_host())[0]


def _show_link_state(link: SpotifyLink) -> None:
    site().controller.status.update(spotify_state=link_label(link.auth.account(), time.time()))


@blueprint.route("/spotify", methods=["GET", "POST"])
def account() -> Any:
    """Instructions, the client id, both login flows, the linked account."""
    errors: dict[str, str] = {}
    authorize_url = ""
    if request.method == "POST":
        errors = forms.save(site().controller, request.form, ["spotify.client_id"])
        if not errors:
            flash("Client id saved. Next: log in.")
            return redirect(url_for("spotify.account", _anchor="login"))
    with _link() as link:
        if request.method == "GET" and request.args.get("flow") == "paste":
            try:
                authorize_url = link.auth.begin_login(link.auth.redirect_uris(_host())[1])
            except LoginError as err:
                errors["login"] = str(err)
        return render_template(
            "spotify.html",
            link_account=link.auth.account(),
            errors=errors,
            client_id=request.form.get(
                "spotify.client_id", site().controller.config.spotify.client_id
            ),
            field=forms.describe("spotify.client_id"),
            redirect_uris=link.auth.redirect_uris(_host()),
            https_redirect=_https_redirect(link),
            authorize_url=authorize_url,
        ), 400 if errors else 200


@blueprint.route("/spotify/login", methods=["POST"])
def login() -> Any:
    """The HTTPS flow: off to Spotify, which sends the browser back to the device's callback."""
    with _link() as link:
        try:
            return redirect(link.auth.begin_login(_https_redirect(link)))
        except LoginError as err:
            flash(str(err))
            return redirect(url_for("spotify.account", _anchor="login"))


@blueprint.route("/spotify/paste", methods=["POST"])
def paste() -> Any:
    """The paste flow's end: the address the browser was sent to after approving."""
    with _link() as link:
        try:
            account = link.auth.finish_login(request.form.get("address", ""))
        except LoginError as err:
            flash(f"Not linked: {err}")
            return redirect(url_for("spotify.account", flow="paste", _anchor="login"))
        switched = site().controller.spotify_linked(link_label(link.auth.account(), time.time()))
    message = f"Linked to {account.display_name or account.user_id}."
    if switched:
        message += " The player now plays on Spotify."
    flash(message + " Next: choose the speaker.")
    return redirect(url_for("spotify.speaker"))


@blueprint.route("/spotify/logout", methods=["POST"])
def logout() -> Any:
    with _link() as link:
        link.auth.logout()
        _show_link_state(link)
    flash("Spotify account unlinked; its tokens are deleted from this device.")
    return redirect(url_for("spotify.account"))


@blueprint.route("/speaker", methods=["GET", "POST"])
def speaker() -> Any:
    """The Spotify Connect devices the account sees; the chosen one is saved by name and id."""
    devices: list[dict[str, Any]] = []
    problem = ""
    with _link() as link:
        try:
            devices = link.service.devices()
        except SpotifyServiceError as err:
            problem = str(err)
    if request.method == "POST" and not problem:
        chosen = next((d for d in devices if d["id"] == request.form.get("device")), None)
        if chosen is None:
            problem = "That speaker is no longer listed: refresh and choose again."
        else:
            problem = "; ".join(
                forms.save(
                    site().controller,
                    {"spotify.device_name": chosen["name"], "spotify.device_id": chosen["id"]},
                    ["spotify.device_name", "spotify.device_id"],
                ).values()
            )
        if not problem:
            flash(f"Speaker: {chosen['name']}. Next: a playlist per emotion.")
            return redirect(url_for("spotify.speaker"))
    return render_template(
        "speaker.html", devices=devices, problem=problem, chosen=site().controller.config.spotify
    ), (400 if problem and request.method == "POST" else 200)


@blueprint.route("/speaker/test", methods=["POST"])
def speaker_test() -> Any:
    """Plays a few seconds on the chosen speaker, then pauses."""
    spotify = site().controller.config.spotify
    with _link() as link:
        try:
            flash(
                sentence(
                    link.service.test_play(spotify.device_id or spotify.device_name, TEST_PLAY_S)
                )
            )
        except SpotifyServiceError as err:
            flash(f"The test did not play: {err}")
    return redirect(url_for("spotify.speaker"))


SUGGESTED_SEARCHES = {
    "angry": "calm down",
    "disgust": "mood booster",
    "fear": "peaceful piano",
    "happy": "feel good hits",
    "sad": "comforting songs",
    "surprise": "upbeat discoveries",
    "neutral": "chill focus",
}
"""What each emotion's search box starts with: sensible defaults that the household's own
app can search (new Spotify apps cannot read Spotify's editorial playlists)."""


@blueprint.route("/playlists", methods=["GET", "POST"])
def playlists() -> Any:
    """A playlist per emotion, found by search or pasted as a link; `emotion` says which."""
    emotion = request.values.get("emotion", "")
    errors: dict[str, str] = {}
    if request.method == "POST":
        errors = _set_playlist(emotion, request.form.get("link", ""))
        if not errors:
            flash(f"{emotion.title()}: saved.")
            return redirect(url_for("spotify.playlists", _anchor=emotion))
    query = request.args.get("q", "").strip()
    results: list[dict[str, str]] = []
    config = site().controller.config
    with _link() as link:
        if query and emotion in EMOTIONS:
            try:
                results = link.service.search_playlists(query)
            except SpotifyServiceError as err:
                errors[emotion] = f"Search failed: {err}"
        previews = {e: _preview(link, config.playlists.for_mood(e)) for e in EMOTIONS}
    return render_template(
        "playlists.html",
        emotions=EMOTIONS,
        previews=previews,
        errors=errors,
        query=query,
        results=results,
        searched=emotion,
        suggested=SUGGESTED_SEARCHES,
        config=config,
    ), 400 if errors else 200


def _set_playlist(emotion: str, text: str) -> dict[str, str]:
    """Save a pasted link or URI as `emotion`'s playlist (empty removes it); problems by emotion."""
    if emotion not in EMOTIONS:
        return {"playlists": f"unknown emotion {emotion!r}"}
    try:
        uri = parse_spotify_link(text) if text.strip() else ""
    except ValueError as err:
        return {emotion: str(err)}
    name = f"playlists.{emotion}"
    problem = forms.save(site().controller, {name: uri}, [name]).get(name)
    return {emotion: problem} if problem else {}


def _preview(link: SpotifyLink, uri: str) -> dict[str, str]:
    if not uri:
        return {}
    try:
        return link.service.context_info(uri)
    except SpotifyServiceError as err:
        return {"uri": uri, "name": "", "image": "", "problem": str(err)}
