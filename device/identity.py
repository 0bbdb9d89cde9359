"""A stable, non-identifying id for this device (MQTT topics, discovery, mDNS names)."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

MACHINE_ID = Path("/etc/machine-id")
ID_FILE = "device_id"
"""In the state folder: an id of its own for a device that shares its machine id with another
(an SD card cloned after first boot, two daemons on one machine)."""
_ID = re.compile(r"^[0-9a-f]{8}$")


def device_id(state_dir: Path | None = None, machine_id_file: Path = MACHINE_ID) -> str:
    """Eight hex digits: `<state_dir>/device_id` when it holds such, else derived from the
    machine id (never the id itself), else from the hostname."""
    if state_dir is not None:
        try:
            own = (state_dir / ID_FILE).read_text().strip()
        except OSError:
            own = ""
        if _ID.match(own):
            return own
    try:
        seed = machine_id_file.read_text().strip()
    except OSError:
        seed = ""
    seed = seed or socket.gethostname()
    return hashlib.sha256(f"moodmelody:{seed}".encode()).hexdigest()[:8]
