"""Serving the setup page with waitress on a background thread of the daemon."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

from flask import Flask
from waitress import create_server, wasyncore

from device.controller import Controller
from web_config.app import Snapshot, create_app
from web_config.auth import ensure_setup_code

logger = logging.getLogger(__name__)

THREADS = 4


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class WebServer:
    """A running waitress server; `stop()` closes its sockets and waits for its threads."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        # Bound here first: when waitress binds itself and fails, it leaks its threads.
        listener = socket.create_server((host, port), family=_family(host), backlog=64)
        self._server = create_server(
            app,
            sockets=[listener],
            threads=THREADS,
            ident="moodmelody",
            clear_untrusted_proxy_headers=True,
        )
        self.host = host
        self.port = int(listener.getsockname()[1])  # the real one when `port` was 0
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        self._server.run()
        self._server.task_dispatcher.shutdown()

    def stop(self, timeout: float = 5.0) -> None:
        # Closing every socket from the server's own loop thread ends its loop.
        self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map))
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("setup page: the web server did not stop within %.0f s", timeout)


def serve(app: Flask, listen: str) -> WebServer:
    """Serve `app` on `listen` ("HOST:PORT", "[::]:PORT" for IPv6) until `.stop()`."""
    host, _, port = listen.rpartition(":")
    server = WebServer(app, host.strip("[]"), int(port))
    server.start()
    logger.info("setup page listening on %s:%d", host, server.port)
    return server


def start_web(
    controller: Controller, state_dir: Path, snapshot: Snapshot | None = None
) -> WebServer:
    """The daemon's entry point: log the first-run setup code, build the app, serve it.

    Raises OSError when the address is taken. A changed `[web] listen` needs a restart.
    """
    code = ensure_setup_code(state_dir)
    if code:
        logger.warning(
            "setup code: %s (enter it on the setup page to choose the admin password)", code
        )
    app = create_app(controller, state_dir=state_dir, snapshot=snapshot)
    return serve(app, controller.config.web.listen)
