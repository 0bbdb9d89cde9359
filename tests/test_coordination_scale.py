"""Fifty Mood Melodies on one mosquitto: the project's own MQTT bridge and coordinator for
each (no camera, model or player), on ten Spotify accounts of five devices, then on one.

They must reach one driver per account within a bounded time, hand over within a bounded
time, and keep the broker's coordination traffic to a bounded rate. The figures are printed
(`pytest -s`) and recorded in the README."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from device.config import Config, apply_changes
from device.controller import Controller
from device.coordination import ROOT, account_key
from device.coordinator import HEARTBEATS_PER_TIMEOUT, Coordinator
from device.mqtt import MqttBridge
from device.status import StatusBoard
from tests.conftest import Broker
from tests.mqtt_recorder import Recorder
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

DEVICES = 50
PEER_TIMEOUT_S = 9.0  # a heartbeat every 3 s (the default 60 s: every 20 s)
HOLD_S = 2.0
CONVERGE_S = 5.0  # one driver per account within this, from the moment people appear


@dataclass
class Device:
    account: str
    device_id: str
    status: StatusBoard
    coordinator: Coordinator
    bridge: MqttBridge

    def role(self) -> tuple[str, Any]:
        info = self.status.get("coordination_info")
        return info.get("role", ""), info.get("driver_id")


@pytest.fixture(params=[10, 1], ids=["10 accounts", "1 account"])
def accounts(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Broker, accounts: int) -> Iterator[list[Device]]:
    devices = []
    for a in range(accounts):
        account = account_key(f"household-{a}")
        for d in range(DEVICES // accounts):
            device_id = f"{a:02x}{d:02x}beef"
            config = apply_changes(
                Config(),
                {
                    "device": {"name": f"Room {d}", "peer_timeout_s": PEER_TIMEOUT_S},
                    "mood": {"min_switch_interval_s": HOLD_S},
                    "mqtt": {
                        "enabled": True,
                        "host": "127.0.0.1",
                        "port": mosquitto.port,
                        "base_topic": f"mm/{device_id}",
                    },
                },
            )
            status = StatusBoard()
            status.update(spotify_account=account)
            controller = Controller(config, tmp_path / f"{device_id}.toml", status)
            coordinator = Coordinator(device_id, lambda c=controller: c.config, status)
            bridge = MqttBridge(controller, device_id, "", coordinator=coordinator)
            devices.append(Device(account, device_id, status, coordinator, bridge))
    for device in devices:
        device.bridge.start()
    yield devices
    for device in devices:
        device.bridge.stop(timeout=2)


def one_driver_each(devices: list[Device]) -> bool:
    """Every account has exactly one device driving, and all its devices name that one."""
    by_account: dict[str, list[Device]] = {}
    for device in devices:
        by_account.setdefault(device.account, []).append(device)
    for members in by_account.values():
        roles = [m.role() for m in members]
        drivers = [
            m.device_id for m, (role, _) in zip(members, roles, strict=True) if role == "driving"
        ]
        if len(drivers) != 1 or any(driver != drivers[0] for _, driver in roles):
            return False
    return True


def test_fifty_devices_reach_one_driver_per_account_and_keep_the_traffic_low(
    fleet: list[Device], mosquitto: Broker, accounts: int
) -> None:
    traffic = Recorder(mosquitto, f"{ROOT}/#")
    try:
        wait_until(
            lambda: all(d.status.get("mqtt_state") == "connected" for d in fleet),
            "50 connections",
            timeout=30,
        )
        time.sleep(2 * PEER_TIMEOUT_S / HEARTBEATS_PER_TIMEOUT)  # everyone has heard everyone
        idle_from = time.monotonic()
        time.sleep(6.0)
        idle_rate = traffic.rate(idle_from, time.monotonic())

        # Two people appear in every home at the same moment: a contest in each account.
        appeared = time.monotonic()
        per_account = DEVICES // accounts
        for a in range(accounts):
            for d in (1, 3):
                fleet[a * per_account + d].status.update(present=True)
        wait_until(lambda: one_driver_each(fleet), "one driver per account", timeout=30)
        converged = time.monotonic() - appeared
        burst_rate = traffic.rate(appeared, appeared + converged + 1.0)

        # Every driver's room empties: the other occupied room of each home takes over.
        drivers = {d.account: d.role()[1] for d in fleet}
        left = time.monotonic()
        for device in fleet:
            if device.device_id == drivers[device.account]:
                device.status.update(present=False)
        wait_until(
            lambda: (
                one_driver_each(fleet) and all(d.role()[1] != drivers[d.account] for d in fleet)
            ),
            "a new driver per account",
            timeout=30,
        )
        handed_over = time.monotonic() - left

        heartbeat_s = PEER_TIMEOUT_S / HEARTBEATS_PER_TIMEOUT
        expected_idle = len(fleet) / heartbeat_s
        print(
            f"\n{len(fleet)} devices, {accounts} account(s): one driver per account "
            f"{converged:.2f} s after two people appeared in every home; a new one "
            f"{handed_over:.2f} s after each driver's room emptied (hold {HOLD_S:g} s); "
            f"coordination traffic {idle_rate:.1f} msg/s idle (heartbeat every "
            f"{heartbeat_s:g} s: {expected_idle:.1f}), {burst_rate:.1f} msg/s while settling"
        )
        assert converged < CONVERGE_S
        assert handed_over < CONVERGE_S
        assert idle_rate <= 1.3 * expected_idle
        assert burst_rate <= 4 * expected_idle
        kinds = Counter(d.role()[0] for d in fleet)
        assert kinds == {"driving": accounts, "standing by": len(fleet) - accounts}
    finally:
        traffic.close()
