"""Faults the appliance must survive with nothing lost (the daemon-level ones are in
test_daemon.py and test_end_to_end.py; Spotify's in test_spotify_player.py; the broker's
in test_mqtt.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from device.config import Config, apply_changes, load_config, save_config

WRITER = """
import sys
from device.config import Config, apply_changes, save_config
path = sys.argv[1]
i = 0
print("writing", flush=True)
while True:
    i += 1
    config = apply_changes(Config(), {"mqtt": {"host": f"broker{i}.lan",
                                               "password": "x" * (i % 5000)}})
    save_config(config, path)
"""


def test_sigkill_mid_write_leaves_the_old_or_the_new_file_never_a_torn_one(
        tmp_path: Path) -> None:
    """The page saves settings while systemd may SIGKILL us: the file must always parse."""
    path = tmp_path / "config.toml"
    save_config(apply_changes(Config(), {"mqtt": {"host": "broker0.lan"}}), path)
    for attempt in range(15):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "writing"
        time.sleep(0.05 + attempt * 0.013)
        writer.send_signal(signal.SIGKILL)
        writer.wait(5)
        writer.stdout.close()
        config = load_config(path)  # raises if torn
        assert config.mqtt.host.startswith("broker")
        assert config.mqtt.password == "x" * len(config.mqtt.password)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "config.toml"]
    # A kill between creating and renaming the temporary file can leave it behind; it is
    # never read (a dot-file with .tmp), and the next save of the same name still works.
    assert all(name.startswith(".config.toml.") and name.endswith(".tmp") for name in leftovers)
