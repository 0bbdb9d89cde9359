"""Crash-safe file writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync, rename.

    The file is created with `mode` from the start (0600 by default: most of what we
    write holds a secret), so there is no moment where a secret is world-readable. Written
    by root into a folder that belongs to someone else (an administrator's `sudo moodmelody
    login` into the service's state folder), it is given to the folder's owner, who could
    not read it otherwise.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        if os.geteuid() == 0 and (folder := os.stat(target.parent)).st_uid != 0:
            os.fchown(fd, folder.st_uid, folder.st_gid)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
