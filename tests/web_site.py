"""Fixtures for the setup page's tests: a live Controller, its app, and a logged-in client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from device.config import Config, apply_changes, save_config
from device.controller import Controller
from device.status import StatusBoard
from web_config import auth
from web_config.app import Snapshot, SpotifyFactory, create_app

PASSWORD = "correct horse battery"
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def make_controller(tmp_path: Path, **sections: dict[str, Any]) -> Controller:
    """A Controller over a real config file in `tmp_path`, state in `tmp_path/state`."""
    changes: dict[str, dict[str, Any]] = {"paths": {"state_dir": str(tmp_path / "state")}}
    changes.update(sections)
    config = apply_changes(Config(), changes)
    config_path = tmp_path / "config.toml"
    save_config(config, config_path)
    return Controller(config, config_path, StatusBoard())


@dataclass
class WebSite:
    """The app around a live controller, and a test client that plays the browser."""

    controller: Controller
    state_dir: Path
    app: Flask
    client: FlaskClient

    def csrf(self) -> str:
        """The session's CSRF token, as a page's <meta> hands it to its script."""
        page = self.client.get("/login", follow_redirects=True)
        match = _CSRF_META.search(page.get_data(as_text=True))
        assert match, "no CSRF token on the page"
        return match.group(1)

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> TestResponse:
        """A form POST carrying this session's CSRF token."""
        return self.client.post(path, data={**(data or {}), "csrf_token": self.csrf()}, **kwargs)

    def set_password(self) -> None:
        code = auth.ensure_setup_code(self.state_dir)
        assert code
        answer = self.post("/setup", {"code": code, "password": PASSWORD, "password2": PASSWORD})
        assert answer.status_code == 302, answer.get_data(as_text=True)

    def log_in(self) -> TestResponse:
        return self.post("/login", {"password": PASSWORD})

    def text(self, path: str) -> str:
        answer = self.client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        return answer.get_data(as_text=True)


FAKE_JPEG = b"\xff\xd8\xff\xe0 fake jpeg \xff\xd9"


def build_site(
    tmp_path: Path,
    spotify_factory: SpotifyFactory | None = None,
    snapshot: Snapshot | None = lambda: FAKE_JPEG,
    **sections: dict[str, Any],
) -> WebSite:
    controller = make_controller(tmp_path, **sections)
    state_dir = controller.config.state_dir()
    app = create_app(controller, state_dir=state_dir, spotify=spotify_factory, snapshot=snapshot)
    return WebSite(controller, state_dir, app, app.test_client())


@pytest.fixture
def fresh_site(tmp_path: Path) -> WebSite:
    """A device on its first start: no admin password yet."""
    return build_site(tmp_path)


@pytest.fixture
def site(fresh_site: WebSite) -> Iterator[WebSite]:
    """A set-up device with a logged-in browser session."""
    fresh_site.set_password()
    yield fresh_site
