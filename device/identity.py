"""A stable, non-identifying id for this device (MQTT topics, discovery, mDNS names)."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

MACHINE_ID = Path("/etc/machine-id")


def device_id(machine_id_file: Path = MACHINE_ID) -> str:
    """Eight hex digits derived from the machine id (never the id itself), else the hostname."""
    try:
        seed = machine_id_file.read_text().strip()
    except OSError:
        seed = ""
    seed = seed or socket.gethostname()
    return hashlib.sha256(f"moodmelody:{seed}".encode()).hexdigest()[:8]
