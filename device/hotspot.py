"""When the setup Wi-Fi access point should be up: a pure decision from what the network is doing.

provisioning/hotspot.sh gathers the facts with nmcli and iw every few seconds (a systemd
timer), asks `python -m device.hotspot` what to do, and brings the NetworkManager hotspot
up or down. Nothing here touches the network or reads a clock.
"""

from __future__ import annotations

import argparse
import enum
import sys
from dataclasses import dataclass


class Action(enum.Enum):
    START = "start"
    STOP = "stop"
    KEEP = "keep"


@dataclass(frozen=True)
class NetworkView:
    """What the shell side saw on one tick."""

    uplink: bool
    """A connection other than the hotspot is up (Ethernet, or Wi-Fi as a client)."""
    hotspot_active: bool
    saved_wifi: int
    """Saved Wi-Fi client profiles, the hotspot's own profile not counted."""
    clients: int
    """Stations connected to the hotspot (phones on the setup page)."""
    offline_s: float
    """Seconds since the device was last online, the hotspot last stopped, or boot (latest)."""
    hotspot_s: float
    """Seconds the hotspot has been up; 0 when it is down."""


@dataclass(frozen=True)
class HotspotPolicy:
    boot_grace_s: float = 45.0
    """With no saved Wi-Fi: how long NetworkManager gets (Ethernet, DHCP) before the AP starts."""
    offline_grace_s: float = 120.0
    """With saved Wi-Fi: how long it may be unreachable (router rebooting) before the AP starts."""
    retry_after_s: float = 600.0
    """With saved Wi-Fi: an idle AP steps aside this often so NetworkManager can retry it."""


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(view: NetworkView, policy: HotspotPolicy = HotspotPolicy()) -> Decision:
    """START or STOP the hotspot, or KEEP things as they are, and why."""
    if view.hotspot_active:
        if view.clients > 0:
            return Decision(Action.KEEP, f"{view.clients} client(s) on the setup network")
        if view.uplink:
            return Decision(Action.STOP, "online through another connection")
        if view.saved_wifi > 0 and view.hotspot_s >= policy.retry_after_s:
            return Decision(Action.STOP, "idle; letting NetworkManager retry the saved Wi-Fi")
        return Decision(Action.KEEP, "offering the setup network")
    if view.uplink:
        return Decision(Action.KEEP, "online")
    grace = policy.offline_grace_s if view.saved_wifi > 0 else policy.boot_grace_s
    if view.offline_s >= grace:
        known = "saved Wi-Fi unreachable" if view.saved_wifi > 0 else "no Wi-Fi configured"
        return Decision(Action.START, f"offline for {view.offline_s:.0f} s, {known}")
    return Decision(Action.KEEP, f"offline for {view.offline_s:.0f} s, waiting up to {grace:.0f} s")


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {value!r}")
    return value == "1"


def main(argv: list[str] | None = None) -> int:
    """Print `ACTION reason` for the facts on the command line (the shell side's entry)."""
    parser = argparse.ArgumentParser(prog="python -m device.hotspot", description=decide.__doc__)
    parser.add_argument("--uplink", type=_flag, required=True, help="0 or 1")
    parser.add_argument("--hotspot-active", type=_flag, required=True, help="0 or 1")
    parser.add_argument("--saved-wifi", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--offline-s", type=float, required=True)
    parser.add_argument("--hotspot-s", type=float, required=True)
    args = parser.parse_args(argv)
    decision = decide(NetworkView(**vars(args)))
    sys.stdout.write(f"{decision.action.value} {decision.reason}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
