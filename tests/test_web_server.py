"""Serving the setup page: waitress on a thread, started and stopped by the daemon."""

from __future__ import annotations

import logging
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.web_site import make_controller
from web_config.server import start_web


def test_start_web_serves_on_the_configured_address_and_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """If stop() left the socket open, a restart of the page would find its port taken."""
    port = free_port()
    controller = make_controller(tmp_path, web={"listen": f"127.0.0.1:{port}"})
    with caplog.at_level(logging.INFO):
        server = start_web(controller, controller.config.state_dir())
    try:
        assert server.url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(server.url + "/setup", timeout=5) as answer:
            assert answer.status == 200
            assert answer.headers["Server"] == "moodmelody"
            assert b"Setup code" in answer.read()
        assert "setup code: " in caplog.text
    finally:
        server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_no_setup_code_once_the_password_is_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from web_config import auth

    controller = make_controller(tmp_path, web={"listen": f"127.0.0.1:{free_port()}"})
    auth.set_password(controller.config.state_dir(), "a long password")
    with caplog.at_level(logging.INFO):
        server = start_web(controller, controller.config.state_dir())
    server.stop()
    assert "setup code" not in caplog.text


def test_a_taken_port_is_an_oserror(tmp_path: Path) -> None:
    """The daemon catches OSError to log it and run on without the page."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        controller = make_controller(tmp_path, web={"listen": f"127.0.0.1:{port}"})
        with pytest.raises(OSError):
            start_web(controller, controller.config.state_dir())
