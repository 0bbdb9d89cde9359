"""The setup page's credentials: setup code, password store, secret key, login limiter."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from device.cli import main
from device.config import Config, apply_changes, save_config
from web_config import auth


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_setup_code_is_made_once_private_and_retired_by_the_password(tmp_path: Path) -> None:
    """A code that changed per start, was world-readable or outlived the password would break."""
    code = auth.ensure_setup_code(tmp_path)
    assert code is not None and len(code) == 9 and code[4] == "-"
    assert _mode(tmp_path / auth.SETUP_CODE_FILE) == 0o600
    assert auth.ensure_setup_code(tmp_path) == code
    auth.set_password(tmp_path, "a long password")
    assert not (tmp_path / auth.SETUP_CODE_FILE).exists()
    assert auth.ensure_setup_code(tmp_path) is None


def test_setup_code_ignores_case_spaces_and_dash(tmp_path: Path) -> None:
    code = auth.ensure_setup_code(tmp_path)
    assert code is not None
    assert auth.setup_code_matches(tmp_path, f" {code.lower().replace('-', '')} ")
    assert not auth.setup_code_matches(tmp_path, "AAAA-AAAA")
    assert not auth.setup_code_matches(tmp_path, "")


def test_password_is_stored_as_a_private_scrypt_hash(tmp_path: Path) -> None:
    """The plain password on disk, a readable file or a weak hash would leak it."""
    auth.set_password(tmp_path, "correct horse battery")
    stored = (tmp_path / auth.PASSWORD_FILE).read_text()
    assert stored.startswith("scrypt:")
    assert "correct horse" not in stored
    assert _mode(tmp_path / auth.PASSWORD_FILE) == 0o600
    assert auth.password_matches(tmp_path, "correct horse battery")
    assert not auth.password_matches(tmp_path, "correct horse batter")


def test_short_password_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    with pytest.raises(auth.PasswordError, match="at least 8"):
        auth.set_password(tmp_path, "short")
    assert not auth.password_is_set(tmp_path)
    assert not auth.password_matches(tmp_path, "short")


def test_secret_key_is_made_once_and_kept(tmp_path: Path) -> None:
    """A new key per start would log everybody out at every restart."""
    path = tmp_path / auth.SECRET_KEY_FILE
    key = auth.load_secret_key(path)
    assert len(key) == 32
    assert _mode(path) == 0o600
    assert auth.load_secret_key(path) == key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_lock_a_client_out_for_a_minute() -> None:
    clock = Clock()
    limiter = auth.LoginLimiter(max_failures=5, lockout_s=60, clock=clock)
    for _ in range(4):
        limiter.failed("10.0.0.5")
        assert limiter.retry_after("10.0.0.5") == 0
    limiter.failed("10.0.0.5")
    assert limiter.retry_after("10.0.0.5") == 60
    assert limiter.retry_after("10.0.0.6") == 0, "another client is not locked out"
    clock.now += 59
    assert limiter.retry_after("10.0.0.5") == pytest.approx(1)
    clock.now += 1
    assert limiter.retry_after("10.0.0.5") == 0


def test_a_success_forgets_earlier_failures() -> None:
    clock = Clock()
    limiter = auth.LoginLimiter(max_failures=3, clock=clock)
    limiter.failed("a")
    limiter.failed("a")
    limiter.succeeded("a")
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == 0


def test_idle_clients_are_forgotten() -> None:
    """Without this, every address that ever typed a wrong password would stay in memory."""
    clock = Clock()
    limiter = auth.LoginLimiter(forget_after_s=3600, clock=clock)
    for n in range(100):
        limiter.failed(f"10.0.0.{n}")
    clock.now += 3601
    limiter.failed("10.0.1.1")
    assert set(limiter._clients) == {"10.0.1.1"}


def test_the_reset_password_command_prints_the_new_setup_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    save_config(apply_changes(Config(), {"paths": {"state_dir": str(state)}}), config)
    auth.set_password(state, "an old password")

    assert main(["reset-password", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert not auth.password_is_set(state)
    code = auth.ensure_setup_code(state)
    assert code and f"the setup code {code}." in printed
    assert auth.setup_code_matches(state, code)
