"""The systemd units: `systemd-analyze verify` and `security` on them, and the daemon's contract."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
# The most exposure each unit may have (systemd-analyze security, 0 = best, 10 = worst);
# the README records the current scores.
MAX_EXPOSURE = {"moodmelody.service": 2.0, "moodmelody-hotspot.service": 1.5}
# Older/newer systemd versions differ in whether an unknown User= is worth a line.
BENIGN = re.compile(r"(user|group) .*(not found|does not exist|unknown)", re.IGNORECASE)


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is not installed: `make test` installs systemd with apt-get")
    return path


def unit_lines(name: str) -> list[tuple[str, str]]:
    """(key, value) of every setting, in order; repeated keys kept (configparser drops them)."""
    pairs = []
    for line in (UNITS / name).read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def values(name: str, key: str) -> list[str]:
    return [value for k, value in unit_lines(name) if k == key]


@pytest.fixture
def staged_units(tmp_path: Path) -> Path:
    """The units with their ExecStart= pointing at a stub (verify wants an executable)."""
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    folder = tmp_path / "units"
    folder.mkdir()
    for unit in UNITS.iterdir():
        text = re.sub(r"^ExecStart=\S+", f"ExecStart={stub}", unit.read_text(), flags=re.M)
        (folder / unit.name).write_text(text)
    return folder


def test_every_unit_passes_verify(staged_units: Path) -> None:
    """A typo in a directive, a bad section or a wrong value fails here, not on the Pi."""
    units = sorted(str(p) for p in staged_units.iterdir())
    assert len(units) == 3
    result = subprocess.run(
        [analyze(), "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [line for line in result.stderr.splitlines() if not BENIGN.search(line)]
    assert problems == [], result.stderr


def test_verify_catches_a_broken_unit(staged_units: Path) -> None:
    """The verify step above is able to fail: an unknown value is reported."""
    unit = staged_units / "moodmelody.service"
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    result = subprocess.run(
        [analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "notifyy" in result.stderr


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_security_exposure_stays_low(unit: str) -> None:
    """Dropping a hardening line raises the exposure score above the recorded one."""
    result = subprocess.run(
        [analyze(), "security", "--offline=yes", "--no-pager", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    score = float(found.group(1))
    assert score <= MAX_EXPOSURE[unit]
    readme = (REPO / "README.md").read_text()
    assert f"`{unit}` | {score:.1f}" in readme, "record the new score in README.md"


def test_service_keeps_the_daemons_contract() -> None:
    """The daemon relies on these: sd_notify + watchdog, SIGHUP reload, its paths, the camera."""
    name = "moodmelody.service"
    single = dict(unit_lines(name))
    assert single["Type"] == "notify"
    assert single["NotifyAccess"] == "main"
    assert single["WatchdogSec"] == "30s"
    assert single["ExecStart"] == (
        "/opt/moodmelody/venv/bin/moodmelody run --config /etc/moodmelody/config.toml"
    )
    assert single["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert single["Restart"] == "on-failure"
    assert single["StateDirectory"] == single["ConfigurationDirectory"] == "moodmelody"
    assert single["User"] == "moodmelody"
    assert single["SupplementaryGroups"] == "video"
    # SIGTERM stops the daemon within 5 s: systemd must wait longer than that.
    assert int(single["TimeoutStopSec"].rstrip("s")) > 5
    allowed = {value.split()[0] for value in values(name, "DeviceAllow")}
    assert {"char-video4linux", "char-media", "char-dma_heap"} <= allowed
    families = set(single["RestrictAddressFamilies"].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert single["ProtectSystem"] == "strict"
    assert "/etc/moodmelody" in single["ReadWritePaths"].split()
