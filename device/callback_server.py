"""The HTTPS login callback: where Spotify sends the browser back after consent.

Spotify accepts only HTTPS (or loopback HTTP) redirect URIs, so the device serves
`https://<device>:8443/callback` with a self-signed certificate made on first start by
the `openssl` command (key 0600 in the state dir). The callback finishes the login and
sends the browser on to the setup page; on failure it shows why, with a way back.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from device.spotify_auth import LoginError, SpotifyAuth

OnLinked = Callable[[str], object]  # Controller.spotify_linked: the new spotify_state
AuthFactory = Callable[[], SpotifyAuth]  # made per login, with the settings of the moment

logger = logging.getLogger(__name__)

CERT_FILE = "callback_cert.pem"
KEY_FILE = "callback_key.pem"
HANDSHAKE_TIMEOUT_S = 10


def ensure_certificate(state_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
    """The (certificate, key) files, made once with `openssl` if missing; the key is 0600."""
    cert, key = state_dir / CERT_FILE, state_dir / KEY_FILE
    if cert.exists() and key.exists():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "the openssl command is needed to make the callback's certificate "
            "(apt-get install openssl)"
        )
    names = []
    for host in hosts:
        try:
            names.append(f"IP:{ipaddress.ip_address(host)}")
        except ValueError:
            names.append(f"DNS:{host}")
    state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=state_dir) as tmp:  # 0700: the key is never exposed
        new_cert, new_key = Path(tmp) / CERT_FILE, Path(tmp) / KEY_FILE
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-days",
                "3650",
                "-subj",
                "/CN=Mood Melody",
                "-keyout",
                str(new_key),
                "-out",
                str(new_cert),
                "-addext",
                f"subjectAltName={','.join(names)}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        os.chmod(new_key, 0o600)
        os.replace(new_key, key)
        os.replace(new_cert, cert)
    logger.info("made the login callback's self-signed certificate for %s", ", ".join(hosts))
    return cert, key


def _certificate_hosts() -> list[str]:
    """Names the certificate covers: the host name, its .local name and loopback."""
    name = socket.gethostname()
    return [name, f"{name}.local", "localhost", "127.0.0.1"]


class CallbackServer(ThreadingHTTPServer):
    """A threading HTTPS server: the TLS handshake runs in each request's thread."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        context: ssl.SSLContext,
        auth: AuthFactory,
        setup_url: str,
        on_linked: OnLinked | None = None,
    ) -> None:
        super().__init__(address, _CallbackHandler)
        self.context = context
        self.auth = auth
        self.setup_url = setup_url
        self.on_linked = on_linked
        self._thread = threading.Thread(
            target=self.serve_forever, name="spotify-callback", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            logger.info("callback: TLS handshake with %s failed: %s", client_address[0], err)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()


class _CallbackHandler(BaseHTTPRequestHandler):
    server: CallbackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line holds the login code: never logged

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/callback":
            self._page(404, "Not found", "This address only receives Spotify's login.")
            return
        auth = self.server.auth()  # the client id entered since the start counts
        try:
            account = auth.finish_login(self.path)
        except LoginError as err:
            logger.warning("Spotify login failed: %s", err)
            self._page(400, "Spotify was not linked", str(err))
            return
        logger.info("Spotify login completed for %s", account.display_name)
        if self.server.on_linked is not None:
            from device.spotify import link_label

            try:
                self.server.on_linked(link_label(auth.account(), time.time()))
            except Exception:
                logger.exception("Spotify login: applying the link failed")
        self.send_response(303)
        self.send_header("Location", self.server.setup_url)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _page(self, status: int, title: str, message: str) -> None:
        back = html.escape(self.server.setup_url, quote=True)
        body = (
            f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
            f'<p><a href="{back}">Back to the setup page</a></p>'
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_callback_server(
    auth: AuthFactory, listen: str, setup_url: str, on_linked: OnLinked | None = None
) -> CallbackServer:
    """Serve `/callback` on `listen` (HOST:PORT) over HTTPS; `.shutdown()` stops it.

    `auth` makes the account link for each login (with the client id saved by then);
    `on_linked` (the Controller's `spotify_linked`) hears of each completed login."""
    cert, key = ensure_certificate(auth().state_dir, _certificate_hosts())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    host, _, port = listen.rpartition(":")
    server = CallbackServer((host, int(port)), context, auth, setup_url, on_linked)
    server.start()
    logger.info("Spotify login callback listening on https://%s:%s/callback", host, server.port)
    return server
