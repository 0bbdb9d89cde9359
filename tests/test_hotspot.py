"""device/hotspot.py: when the setup access point comes up and goes down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.hotspot import Action, HotspotPolicy, NetworkView, decide, main

REPO = Path(__file__).resolve().parent.parent
POLICY = HotspotPolicy()

views = st.builds(
    NetworkView,
    uplink=st.booleans(),
    hotspot_active=st.booleans(),
    saved_wifi=st.integers(0, 5),
    clients=st.integers(0, 5),
    offline_s=st.floats(0, 10_000),
    hotspot_s=st.floats(0, 10_000),
)


def view(**changes: object) -> NetworkView:
    base = {
        "uplink": False,
        "hotspot_active": False,
        "saved_wifi": 0,
        "clients": 0,
        "offline_s": 0.0,
        "hotspot_s": 0.0,
    }
    return NetworkView(**{**base, **changes})


@given(views)
def test_actions_only_change_what_can_change(v: NetworkView) -> None:
    """Starting a running hotspot or stopping a stopped one means the shell side misread nmcli."""
    action = decide(v).action
    if v.hotspot_active:
        assert action is not Action.START
    else:
        assert action is not Action.STOP


@given(views)
def test_never_starts_while_online(v: NetworkView) -> None:
    """Taking the Wi-Fi chip for an AP while online would cut the device off its network."""
    if v.uplink:
        assert decide(v).action is not Action.START


@given(views)
def test_never_kicks_a_phone_off_the_setup_network(v: NetworkView) -> None:
    """Someone typing their Wi-Fi password on the page must not lose the page."""
    if v.hotspot_active and v.clients > 0:
        assert decide(v).action is Action.KEEP


@given(st.floats(0, 10_000), st.floats(0, 10_000))
def test_with_nothing_to_try_the_hotspot_stays(offline_s: float, hotspot_s: float) -> None:
    """With no saved Wi-Fi and no cable, stopping the AP would leave no way to set it up."""
    active = view(hotspot_active=True, offline_s=offline_s, hotspot_s=hotspot_s)
    assert decide(active).action is Action.KEEP


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"offline_s": 44.0}, Action.KEEP),  # first boot: give NetworkManager its moment
        ({"offline_s": 45.0}, Action.START),  # nothing configured: offer setup
        ({"saved_wifi": 1, "offline_s": 60.0}, Action.KEEP),  # router rebooting
        ({"saved_wifi": 1, "offline_s": 120.0}, Action.START),  # saved Wi-Fi gone
        ({"uplink": True, "offline_s": 9999.0}, Action.KEEP),  # online: nothing to do
        ({"hotspot_active": True, "uplink": True}, Action.STOP),  # cable plugged in
        ({"hotspot_active": True, "uplink": True, "clients": 1}, Action.KEEP),
        ({"hotspot_active": True, "saved_wifi": 2, "hotspot_s": 599.0}, Action.KEEP),
        ({"hotspot_active": True, "saved_wifi": 2, "hotspot_s": 600.0}, Action.STOP),  # retry
        ({"hotspot_active": True, "saved_wifi": 2, "hotspot_s": 900.0, "clients": 1}, Action.KEEP),
    ],
)
def test_decision_table(changes: dict[str, object], expected: Action) -> None:
    """The documented timings (README): 45 s after boot, 120 s offline, retry every 600 s."""
    assert decide(view(**changes), POLICY).action is expected


def test_saved_wifi_gets_retried_then_the_hotspot_returns() -> None:
    """A tick-by-tick run (15 s ticks, as the timer) of a home whose router is down for good."""
    offline_s = hotspot_s = 0.0
    active = False
    starts, stops = [], []
    for tick in range(0, 3600, 15):
        decision = decide(
            view(hotspot_active=active, saved_wifi=1, offline_s=offline_s, hotspot_s=hotspot_s)
        )
        if decision.action is Action.START:
            active, hotspot_s = True, 0.0
            starts.append(tick)
        elif decision.action is Action.STOP:
            active, offline_s, hotspot_s = False, 0.0, 0.0
            stops.append(tick)
        offline_s += 15
        hotspot_s += 15 if active else 0
    assert starts[0] == 120
    assert len(stops) >= 4
    assert [b - a for a, b in zip(starts, stops, strict=False)] == [600] * len(stops)
    assert [b - a for a, b in zip(stops, starts[1:], strict=False)] == [120] * len(stops)


def test_command_line_prints_action_and_reason(capsys: pytest.CaptureFixture[str]) -> None:
    """hotspot.sh reads the first word of this line; anything else would stop it acting."""
    argv = [
        "--uplink",
        "0",
        "--hotspot-active",
        "0",
        "--saved-wifi",
        "0",
        "--clients",
        "0",
        "--offline-s",
        "50",
        "--hotspot-s",
        "0",
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out == "start offline for 50 s, no Wi-Fi configured\n"
    with pytest.raises(SystemExit):
        main([*argv[:1], "yes", *argv[2:]])
    assert "expected 0 or 1" in capsys.readouterr().err


FAKE_NMCLI = '''
"""nmcli and iw as far as hotspot.sh uses them, on a JSON file instead of NetworkManager."""
import json, os, sys
path = os.environ["FAKE_NM"]
state = json.load(open(path))
args = sys.argv[1:]
if os.path.basename(sys.argv[0]) == "iw":  # iw dev IFACE station dump
    print("".join(f"Station 02:00:00:00:00:0{i} (on wlan0)\\n" for i in range(state["clients"])))
    sys.exit(0)
if args[:1] == ["-t"]:  # -t -f FIELDS connection show [--active]
    fields = args[2].split(",")
    shown = state["active"] if "--active" in args else list(state["profiles"])
    for name in shown:
        row = {"NAME": name.replace(":", "\\\\:"), "TYPE": state["profiles"][name]}
        print(":".join(row[f] for f in fields))
elif args[:2] == ["connection", "add"]:
    options = dict(zip(args[2::2], args[3::2]))
    assert options["802-11-wireless.mode"] == "ap" and options["ipv4.method"] == "shared"
    state["profiles"][options["con-name"]] = "802-11-wireless"
elif args[:2] == ["connection", "up"]:
    if args[2] not in state["profiles"]:
        sys.exit("Error: unknown connection '%s'." % args[2])
    state["active"].append(args[2])
elif args[:2] == ["connection", "down"]:
    state["active"].remove(args[2])
else:
    sys.exit(f"fake nmcli: unexpected {args}")
json.dump(state, open(path, "w"))
'''


@pytest.fixture
def network(tmp_path: Path) -> Callable[..., tuple[str, dict[str, Any]]]:
    """Runs provisioning/hotspot.sh once against a fake NetworkManager in the given state."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nmcli", "iw"):
        (bin_dir / tool).write_text(f"#!{sys.executable}\n{FAKE_NMCLI}")
        (bin_dir / tool).chmod(0o755)
    runtime = tmp_path / "run"
    runtime.mkdir()
    state_file = tmp_path / "nm.json"

    def tick(**state: Any) -> tuple[str, dict[str, Any]]:
        if state:
            state_file.write_text(json.dumps(state))
        env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_NM": str(state_file),
            "RUNTIME_DIRECTORY": str(runtime),
            "MOODMELODY_PYTHON": sys.executable,
        }
        result = subprocess.run(
            ["bash", str(REPO / "provisioning/hotspot.sh")],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout, json.loads(state_file.read_text())

    return tick


def uptime() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]))


def test_hotspot_script_starts_keeps_and_stops_the_access_point(
    network: Callable[..., tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    """The shell glue: nmcli's terse output read right, the profile made, time kept across ticks."""
    state_file = tmp_path / "run/state"
    state_file.write_text(f"{uptime() - 50} 0\n")  # offline for 50 s, nothing saved
    out, nm = network(profiles={"Wired connection 1": "802-3-ethernet"}, active=[], clients=0)
    assert "starting the setup hotspot MoodMelody-Setup" in out
    assert nm["active"] == ["moodmelody-setup"]
    assert nm["profiles"]["moodmelody-setup"] == "802-11-wireless"

    out, nm = network(**{**nm, "clients": 1, "active": [*nm["active"], "Wired connection 1"]})
    assert out == "" and "moodmelody-setup" in nm["active"]  # a phone is on the page

    out, nm = network(**{**nm, "clients": 0})
    assert "stopping the setup hotspot: online through another connection" in out
    assert nm["active"] == ["Wired connection 1"]
    quiet_since, hotspot_since = map(int, state_file.read_text().split())
    assert abs(quiet_since - uptime()) <= 2 and hotspot_since == 0


def test_hotspot_script_waits_while_saved_wifi_may_come_back(
    network: Callable[..., tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    """A profile named with a colon and a recent outage: no AP yet (nmcli escapes ':' as '\\:')."""
    (tmp_path / "run/state").write_text(f"{uptime() - 30} 0\n")
    out, nm = network(profiles={"Home: 5G": "802-11-wireless"}, active=[], clients=0)
    assert out == "" and nm["active"] == []
