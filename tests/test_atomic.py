"""Atomic writes: private from the first byte, whole or not at all, owned by who reads them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from device.atomic import write_atomic

SERVICE_UID = 4242  # an unprivileged user that owns the state folder, as on the device


def test_the_file_is_private_and_replaces_the_old_one_whole(tmp_path: Path) -> None:
    target = tmp_path / "token.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"], "no temporary file left"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "token.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_root_writing_into_the_service_folder_gives_the_file_to_its_owner(tmp_path: Path) -> None:
    """`sudo moodmelody login` must leave a token the service (not root) can read."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, SERVICE_UID, SERVICE_UID)
    write_atomic(state / "spotify_token.json", "{}")
    owner = (state / "spotify_token.json").stat()
    assert (owner.st_uid, owner.st_gid) == (SERVICE_UID, SERVICE_UID)


def test_a_file_in_roots_own_folder_stays_roots(tmp_path: Path) -> None:
    write_atomic(tmp_path / "config.toml", "")
    assert (tmp_path / "config.toml").stat().st_uid == os.geteuid()
