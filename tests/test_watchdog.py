"""sd_notify watchdog pings: sent while the analysis loop makes progress, not when it stalls."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from device.daemon import Watchdog
from device.sdnotify import Notifier
from device.status import StatusBoard


def receive_all(sock: socket.socket, seconds: float) -> list[str]:
    messages = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return messages


def test_pings_stop_while_the_loop_is_stalled_and_resume_after(tmp_path: Path) -> None:
    """If a stuck inference still pinged, systemd would never restart a hung daemon."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier = Notifier(str(path))
        watchdog = Watchdog(notifier, interval=0.1, status=StatusBoard())
        watchdog.start()
        try:
            healthy = []
            deadline = time.monotonic() + 0.6
            while time.monotonic() < deadline:
                watchdog.beat()
                healthy += receive_all(sock, 0.05)
            assert sum("WATCHDOG=1" in m for m in healthy) >= 4
            assert all("STATUS=mood none yet, nobody there" in m for m in healthy)
            receive_all(sock, 0.25)  # pings already due before the stall was noticed
            assert receive_all(sock, 0.6) == []  # stalled: no beat for > 2 intervals
            watchdog.beat()
            assert any("WATCHDOG=1" in m for m in receive_all(sock, 0.3))
        finally:
            watchdog.stop()
            notifier.close()
