"""The Spotify pages: the account link, the speaker, and a playlist per emotion."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for

from device import EMOTIONS
from device.config import Config
from web_config import forms
from web_config.app import site

logger = logging.getLogger(__name__)

blueprint = Blueprint("spotify", __name__)

TEST_PLAY_S = 5.0


@dataclass(frozen=True)
class SpotifyLink:
    """The account link (device.spotify_auth) and the Web API client (device.spotify)."""

    auth: Any
    service: Any


def real_spotify(config: Config, state_dir: Path) -> SpotifyLink:
    from device.spotify import SpotifyService

    from device.spotify_auth import SpotifyAuth

    return SpotifyLink(SpotifyAuth(config, state_dir), SpotifyService(config, state_dir))


def _link() -> SpotifyLink:
    factory = site().spotify_factory
    assert factory is not None
    return factory(site().controller.config, site().state_dir)  # type: ignore[no-any-return]


def _host() -> str:
    return urlsplit(f"//{request.host}").hostname or "moodmelody.local"


def _https_redirect(link: SpotifyLink) -> str:
    return site().controller.config.spotify.redirect_uri or link.auth.redirect_uris(_host())[0]


@blueprint.route("/spotify", methods=["GET", "POST"])
def account() -> Any:
    """Instructions, the client id, both login flows, the linked account."""
    from device.spotify_auth import LoginError

    link = _link()
    errors: dict[str, str] = {}
    authorize_url = ""
    if request.method == "POST":
        errors = forms.save(site().controller, request.form, ["spotify.client_id"])
        if not errors:
            flash("Client id saved.")
            return redirect(url_for("spotify.account"))
    elif request.args.get("flow") == "paste":
        try:
            authorize_url = link.auth.begin_login(link.auth.redirect_uris(_host())[1])
        except LoginError as err:
            errors["login"] = str(err)
    config = site().controller.config
    return render_template(
        "spotify.html", link_account=link.auth.account(), errors=errors,
        client_id=request.form.get("spotify.client_id", config.spotify.client_id),
        field=forms.describe("spotify.client_id"), redirect_uris=link.auth.redirect_uris(_host()),
        https_redirect=_https_redirect(link), authorize_url=authorize_url,
    ), 400 if errors else 200


@blueprint.route("/spotify/login", methods=["POST"])
def login() -> Any:
    """The HTTPS flow: off to Spotify, which sends the browser back to the device's callback."""
    from device.spotify_auth import LoginError

    link = _link()
    try:
        return redirect(link.auth.begin_login(_https_redirect(link)))
    except LoginError as err:
        flash(str(err))
        return redirect(url_for("spotify.account"))


@blueprint.route("/spotify/paste", methods=["POST"])
def paste() -> Any:
    """The paste flow's end: the address the browser was sent to after approving."""
    from device.spotify_auth import LoginError

    try:
        account = _link().auth.finish_login(request.form.get("address", ""))
    except LoginError as err:
        flash(f"Not linked: {err}")
        return redirect(url_for("spotify.account", flow="paste"))
    flash(f"Linked to {account.display_name or account.user_id}. Next: choose the speaker.")
    return redirect(url_for("spotify.speaker"))


@blueprint.route("/spotify/logout", methods=["POST"])
def logout() -> Any:
    _link().auth.logout()
    flash("Spotify account unlinked; its tokens are deleted from this device.")
    return redirect(url_for("spotify.account"))


@blueprint.route("/speaker", methods=["GET", "POST"])
def speaker() -> Any:
    """The Spotify Connect devices the account sees; the chosen one is saved by name and id."""
    if request.method == "POST":
        name, _, device_id = request.form.get("device", "").partition("\n")
        errors = forms.save(site().controller, {"spotify.device_name": name,
                                                "spotify.device_id": device_id},
                            ["spotify.device_name", "spotify.device_id"])
        flash(f"Speaker: {name}." if not errors else f"Not saved: {errors}")
        return redirect(url_for("spotify.speaker"))
    devices, problem = [], ""
    try:
        devices = _link().service.devices()
    except Exception as err:  # whatever the API said: shown, and the page still works
        problem = str(err)
    return render_template("speaker.html", devices=devices, problem=problem,
                           chosen=site().controller.config.spotify)


@blueprint.route("/speaker/test", methods=["POST"])
def speaker_test() -> Any:
    spotify = site().controller.config.spotify
    try:
        _link().service.test_play(spotify.device_name, TEST_PLAY_S)
    except Exception as err:
        flash(f"The test did not play: {err}")
    else:
        flash(f"Played {TEST_PLAY_S:g} seconds on {spotify.device_name}.")
    return redirect(url_for("spotify.speaker"))


@blueprint.route("/playlists", methods=["GET", "POST"])
def playlists() -> Any:
    """A playlist per emotion, found by search or pasted as a link."""
    link = _link()
    emotion = request.values.get("emotion", "")
    errors: dict[str, str] = {}
    if request.method == "POST" and emotion in EMOTIONS:
        text = request.form.get("link", "")
        uri = ""
        if text.strip():
            try:
                uri = link.service.parse_spotify_link(text)
            except ValueError as err:
                errors[emotion] = str(err)
        if not errors:
            errors = {k.split(".")[1]: v for k, v in forms.save(
                site().controller, {f"playlists.{emotion}": uri}, [f"playlists.{emotion}"]).items()}
        if not errors:
            flash(f"{emotion.title()}: saved.")
            return redirect(url_for("spotify.playlists", _anchor=emotion))
    results: list[Any] = []
    query = request.args.get("q", "").strip()
    if query:
        try:
            results = link.service.search_playlists(query)
        except Exception as err:
            errors[emotion] = f"search failed: {err}"
    config = site().controller.config
    previews = {e: _preview(link, config.playlists.for_mood(e)) for e in EMOTIONS}
    return render_template("playlists.html", emotions=EMOTIONS, previews=previews,
                           errors=errors, query=query, results=results, searched=emotion,
                           config=config), 400 if errors else 200


def _preview(link: SpotifyLink, uri: str) -> dict[str, str]:
    if not uri:
        return {}
    try:
        return dict(link.service.context_info(uri))
    except Exception as err:
        return {"uri": uri, "problem": str(err)}
