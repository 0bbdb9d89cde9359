"""The setup page as a Flask app, built around the daemon's live `Controller`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from device.config import Config
from device.controller import Controller
from web_config import auth, security
from web_config.history import HISTORY_FILE, MoodHistory

Snapshot = Callable[[], bytes | None]
"""Returns one JPEG of the camera's current frame with the detected face boxed, or None."""

SpotifyFactory = Callable[[Config, Path], Any]
"""Builds the Spotify link for the current settings (web_config.spotify_pages.SpotifyLink)."""


@dataclass
class Site:
    """What the page handlers share; one per app, reached through `site()`."""

    controller: Controller
    state_dir: Path
    history: MoodHistory
    snapshot: Snapshot | None
    spotify_factory: SpotifyFactory
    limiter: auth.LoginLimiter = field(default_factory=auth.LoginLimiter)

    def password_is_set(self) -> bool:
        return auth.password_is_set(self.state_dir)

    def password_stamp(self) -> str:
        return auth.password_stamp(self.state_dir)


def site() -> Site:
    return current_app.extensions["moodmelody"]  # type: ignore[no-any-return]


def _date(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(epoch_s))


def create_app(
    controller: Controller,
    *,
    state_dir: Path,
    spotify: SpotifyFactory | None = None,
    snapshot: Snapshot | None = None,
    secret_key_file: Path | None = None,
    history: MoodHistory | None = None,
    limiter: auth.LoginLimiter | None = None,
) -> Flask:
    """The app; it records the mood history from `controller.status` as long as it lives.

    `spotify` defaults to the real client (device.spotify, pointed at `[spotify] api_url`);
    `snapshot` None hides the camera preview.
    """
    from web_config import pages, spotify_pages, teach_pages

    app = Flask(__name__)
    app.jinja_env.filters["date"] = _date
    app.jinja_env.globals["room"] = lambda: controller.config.device.name
    if history is None:
        history = MoodHistory(state_dir / HISTORY_FILE)
        history.attach(controller.status)
    app.extensions["moodmelody"] = Site(
        controller=controller,
        state_dir=state_dir,
        history=history,
        snapshot=snapshot,
        spotify_factory=spotify if spotify is not None else spotify_pages.real_spotify,
        limiter=limiter or auth.LoginLimiter(),
    )
    key = auth.load_secret_key(secret_key_file or state_dir / auth.SECRET_KEY_FILE)
    security.install(app, key, password_stamp=app.extensions["moodmelody"].password_stamp)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(spotify_pages.blueprint)
    app.register_blueprint(teach_pages.blueprint)
    return app
