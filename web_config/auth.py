"""Who may use the setup page: the first-run setup code, the admin password, login limits."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from device.atomic import write_atomic

logger = logging.getLogger(__name__)

SETUP_CODE_FILE = "setup-code"
PASSWORD_FILE = "admin-password"
SECRET_KEY_FILE = "web-secret-key"
MIN_PASSWORD_LENGTH = 8

# No 0/O, 1/I/L: the code is read off a journal and typed on a phone.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


class PasswordError(ValueError):
    """A chosen password is not acceptable; the message says why."""


def password_is_set(state_dir: Path) -> bool:
    return (state_dir / PASSWORD_FILE).is_file()


def password_stamp(state_dir: Path) -> str:
    """A fingerprint of the stored password hash, "" when none is set.

    A session records it at login and is void once the password is changed or reset, so a
    new password logs out every other browser.
    """
    try:
        stored = (state_dir / PASSWORD_FILE).read_bytes()
    except FileNotFoundError:
        return ""
    return hashlib.sha256(stored).hexdigest()[:16]


def ensure_setup_code(state_dir: Path) -> str | None:
    """The one-time code that allows choosing the admin password; None once one is set.

    Created (0600) at the first start without a password and kept until a password is
    chosen, so every start prints the same code.
    """
    code_file = state_dir / SETUP_CODE_FILE
    if password_is_set(state_dir):
        code_file.unlink(missing_ok=True)
        return None
    if code_file.is_file():
        return code_file.read_text(encoding="utf-8").strip()
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    code = f"{raw[:4]}-{raw[4:]}"
    write_atomic(code_file, code + "\n")
    return code


def _normalise_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def setup_code_matches(state_dir: Path, entered: str) -> bool:
    """Compare in constant time; case, spaces and the dash do not matter."""
    try:
        expected = (state_dir / SETUP_CODE_FILE).read_text(encoding="utf-8")
    except OSError:
        return False
    return hmac.compare_digest(
        _normalise_code(expected).encode(), _normalise_code(entered).encode()
    )


def set_password(state_dir: Path, password: str) -> None:
    """Store the scrypt hash of `password` (0600) and retire the setup code."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"use at least {MIN_PASSWORD_LENGTH} characters")
    write_atomic(state_dir / PASSWORD_FILE, generate_password_hash(password, method="scrypt"))
    (state_dir / SETUP_CODE_FILE).unlink(missing_ok=True)
    logger.info("admin password set")


def reset_password(state_dir: Path) -> str:
    """Forget the admin password (the way out when it is forgotten); returns the new setup code
    that the first-run page then asks for."""
    (state_dir / PASSWORD_FILE).unlink(missing_ok=True)
    (state_dir / SETUP_CODE_FILE).unlink(missing_ok=True)
    code = ensure_setup_code(state_dir)
    assert code is not None
    logger.warning("admin password reset: choose a new one with the setup code")
    return code


def password_matches(state_dir: Path, password: str) -> bool:
    try:
        stored = (state_dir / PASSWORD_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return check_password_hash(stored, password)


def load_secret_key(path: Path) -> bytes:
    """The key that signs session cookies: made once (0600), then reused across restarts."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    if len(key) < 32:
        key = secrets.token_bytes(32)
        write_atomic(path, key)
    return key


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last: float = 0.0


@dataclass
class LoginLimiter:
    """After `max_failures` wrong passwords in a row a client waits `lockout_s` seconds.

    Pure bookkeeping; `clock` is injected (monotonic seconds). Entries idle for longer
    than `forget_after_s` are dropped so the table cannot grow without bound.
    """

    max_failures: int = 5
    lockout_s: float = 60.0
    forget_after_s: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _clients: dict[str, _Failures] = field(default_factory=dict)

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        entry = self._clients.get(client)
        if entry is None:
            return 0.0
        return max(0.0, entry.locked_until - self.clock())

    def failed(self, client: str) -> None:
        now = self.clock()
        self._forget_idle(now)
        entry = self._clients.setdefault(client, _Failures())
        entry.count += 1
        entry.last = now
        if entry.count >= self.max_failures:
            entry.count = 0
            entry.locked_until = now + self.lockout_s
            logger.warning(
                "setup page: %s locked out for %.0f s after repeated wrong passwords",
                client,
                self.lockout_s,
            )

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _forget_idle(self, now: float) -> None:
        idle = [
            c
            for c, e in self._clients.items()
            if now - e.last > self.forget_after_s and e.locked_until <= now
        ]
        for client in idle:
            del self._clients[client]
