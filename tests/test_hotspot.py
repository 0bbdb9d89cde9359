"""device/hotspot.py: when the setup access point comes up and goes down."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.hotspot import Action, HotspotPolicy, NetworkView, decide, main

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
    base = {"uplink": False, "hotspot_active": False, "saved_wifi": 0, "clients": 0,
            "offline_s": 0.0, "hotspot_s": 0.0}
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
        ({"hotspot_active": True, "saved_wifi": 2, "hotspot_s": 900.0, "clients": 1},
         Action.KEEP),
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
        decision = decide(view(hotspot_active=active, saved_wifi=1,
                               offline_s=offline_s, hotspot_s=hotspot_s))
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
    argv = ["--uplink", "0", "--hotspot-active", "0", "--saved-wifi", "0", "--clients", "0",
            "--offline-s", "50", "--hotspot-s", "0"]
    assert main(argv) == 0
    assert capsys.readouterr().out == "start offline for 50 s, no Wi-Fi configured\n"
    with pytest.raises(SystemExit):
        main([*argv[:1], "yes", *argv[2:]])
    assert "expected 0 or 1" in capsys.readouterr().err
