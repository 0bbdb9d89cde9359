"""device/sdnotify.py against a real AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET is."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing where systemd listens, and its path."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path


def test_fields_arrive_as_one_datagram_of_lines(listener: tuple[socket.socket, str]) -> None:
    """systemd reads one datagram of KEY=value lines; a split or a wrong separator is lost."""
    sock, path = listener
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.notify(READY=1, STATUS="analysing, mood happy")
    assert sock.recv(4096) == b"READY=1\nSTATUS=analysing, mood happy"
    assert notifier.notify(WATCHDOG=1)
    assert notifier.notify(STOPPING=1)
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_address_comes_from_notify_socket(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under systemd the only way to learn the socket is $NOTIFY_SOCKET."""
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier()
    assert notifier.notify(READY=1)
    assert sock.recv(4096) == b"READY=1"
    notifier.close()


def test_abstract_namespace_address() -> None:
    """systemd hands out "@name" sockets (abstract namespace): "@" must become a NUL byte."""
    name = f"moodmelody-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier("@" + name)
        assert notifier.notify(READY=1)
        assert sock.recv(4096) == b"READY=1"
        notifier.close()


def test_outside_systemd_every_call_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """`moodmelody run` from a terminal must not fail for want of systemd."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.notify(READY=1) is False
    notifier.close()


def test_a_vanished_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing notification must not take the daemon down with it."""
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING, logger="device.sdnotify"):
        assert notifier.notify(WATCHDOG=1) is False
    assert "sd_notify failed" in caplog.text
    notifier.close()
    assert not notifier.enabled
    assert notifier.notify(WATCHDOG=1) is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "own", 15.0),
        ("30000000", "1", None),  # meant for another process (our parent)
        ("2000000", None, 1.0),
        (None, None, None),
        ("", None, None),
        ("thirty", None, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    """Pinging at the full WatchdogSec= would race the deadline; another PID's value is not ours."""
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "own" else value)
    assert watchdog_interval() == expected
