"""Several Mood Melodies on one Spotify account: the rule, the announcements, and the
coordinator's state, on simulated clocks and a simulated broker (the real broker and real
daemons are in test_coordination_daemons.py)."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from device.config import Config, apply_changes
from device.coordination import (
    ALONE,
    DRIVING,
    IDLE,
    ON_ITS_OWN,
    STANDING_BY,
    Announcement,
    Decision,
    Member,
    Playing,
    account_key,
    account_topic,
    choose_driver,
    decide,
)
from device.coordinator import Coordinator
from device.status import StatusBoard

HOLD = 120.0


def said(device_id: str, **changes: Any) -> Announcement:
    base = Announcement(
        device_id=device_id,
        name=device_id.title(),
        priority=0,
        speaker=f"{device_id.title()} speaker",
        wanted_for_s=None,
        forced=False,
        driving_for_s=None,
        hold_s=HOLD,
        mood=None,
        playing=None,
        sent_at=1_800_000_000.0,
    )
    return replace(base, **changes)


def member(device_id: str, now: float = 1000.0, **changes: Any) -> Member:
    return Member(said(device_id, **changes), heard_at=now)


def driver_of(*members: Member, now: float = 1000.0) -> str | None:
    chosen = choose_driver(members, now)
    return None if chosen is None else chosen.device_id


# -- the rule ----------------------------------------------------------------------------


def test_the_driver_keeps_the_account_while_someone_is_in_its_room() -> None:
    """A newer arrival elsewhere does not take the music from an occupied room."""
    living = member("living", wanted_for_s=600, driving_for_s=590)
    kitchen = member("kitchen", wanted_for_s=5)
    assert driver_of(living, kitchen) == "living"


def test_an_empty_room_hands_the_account_to_the_most_recent_arrival() -> None:
    living = member("living", driving_for_s=900)  # nobody there any more
    kitchen = member("kitchen", wanted_for_s=300)
    bedroom = member("bedroom", wanted_for_s=20)
    assert driver_of(living, kitchen, bedroom) == "bedroom"


def test_the_hold_keeps_the_account_for_the_minimum_switch_interval() -> None:
    """A driver that took the account 60 s ago keeps it for its 120 s hold, even with its
    room empty: at most one hand-over per hold."""
    living = member("living", driving_for_s=60)
    kitchen = member("kitchen", wanted_for_s=50)
    assert driver_of(living, kitchen) == "living"
    assert driver_of(replace(living, heard_at=940.0), kitchen) == "kitchen"  # 120 s on


def test_priority_takes_the_account_from_an_occupied_room_after_the_hold() -> None:
    kitchen = member("kitchen", wanted_for_s=600, driving_for_s=500)
    living = member("living", wanted_for_s=10, priority=5)
    assert driver_of(kitchen, living) == "living"
    assert driver_of(kitchen, replace(living, said=replace(living.said, priority=0))) == "kitchen"
    held = member("kitchen", wanted_for_s=600, driving_for_s=30)
    assert driver_of(held, living) == "kitchen"


def test_a_mood_override_outranks_every_room_and_the_hold() -> None:
    living = member("living", wanted_for_s=600, driving_for_s=10, priority=9)
    kitchen = member("kitchen", wanted_for_s=1, forced=True)
    assert driver_of(living, kitchen) == "kitchen"


def test_with_nobody_anywhere_the_last_driver_keeps_the_account() -> None:
    assert driver_of(member("living", driving_for_s=5000), member("kitchen")) == "living"
    assert driver_of(member("living"), member("kitchen")) is None


def test_claims_made_before_the_devices_heard_each_other_are_settled_alike() -> None:
    """Two devices claimed within a second; each sees its own claim as the earlier one (the
    other's age reaches it late). Both settle on the same driver: by priority, then id."""
    at_a = [member("b", wanted_for_s=1.0, driving_for_s=0.9), member("a", wanted_for_s=0.5)]
    at_a[1] = member("a", wanted_for_s=0.5, driving_for_s=0.5)
    at_b = [member("a", wanted_for_s=0.4, driving_for_s=0.4), member("b", driving_for_s=1.2)]
    assert driver_of(*at_a) == driver_of(*at_b) == "a"
    ranked = [member("b", driving_for_s=1.0, priority=1), member("a", driving_for_s=3.0)]
    assert driver_of(*ranked) == "b"


def test_a_claim_well_before_another_stands() -> None:
    assert driver_of(member("b", driving_for_s=60), member("a", driving_for_s=1)) == "b"


def test_decisions_in_words() -> None:
    """The page's and Home Assistant's line for each role."""
    playing = Playing("spotify:playlist:x", "Happy Hits", "Kitchen speaker", "playing")
    kitchen = member("kitchen", wanted_for_s=100, driving_for_s=90, playing=playing)
    here = member("living", wanted_for_s=10)
    empty = member("living")
    assert decide(here, [kitchen], 1000.0).describe() == (
        "following: playing Happy Hits on Kitchen speaker (driven by Kitchen)"
    )
    assert decide(empty, [kitchen], 1000.0).describe() == "standing by: Kitchen has the account"
    driving = decide(kitchen, [empty], 1000.0)
    assert driving.role == DRIVING
    assert driving.describe() == (
        "driving: playing Happy Hits on Kitchen speaker (1 other Mood Melody on the account)"
    )
    assert decide(empty, [member("kitchen")], 1000.0).role == IDLE
    assert decide(empty, [], 1000.0).role == ALONE
    standing = decide(empty, [kitchen], 1000.0)
    assert not standing.drives
    assert standing.attributes() == {
        "role": STANDING_BY,
        "driver": "Kitchen",
        "driver_id": "kitchen",
        "speaker": "Kitchen speaker",
        "others": ["Kitchen"],
    }


# -- announcements -----------------------------------------------------------------------


def test_an_announcement_survives_the_wire() -> None:
    original = said(
        "a1b2c3d4",
        wanted_for_s=12.5,
        driving_for_s=3.0,
        mood="happy",
        playing=Playing("spotify:playlist:x", "Up", "Kitchen", "playing"),
    )
    assert Announcement.from_json(original.to_json().encode()) == original


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a version 1 announcement"),
        (b'{"v": 2}', "not a version 1 announcement"),
        (b'{"v": 1, "device_id": "a"}', "bad field"),
    ],
)
def test_a_bad_announcement_says_what_is_wrong(payload: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Announcement.from_json(payload)


def test_the_account_key_is_not_the_user_id() -> None:
    key = account_key("ann.smith")
    assert key == account_key("ann.smith") != account_key("bob")
    assert "ann" not in key and len(key) == 12


# -- the coordinator on simulated clocks and a simulated broker --------------------------


@dataclass
class Clock:
    now: float = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now


ACCOUNT = account_key("household")


def device_config(room: str, hold_s: float, timeout_s: float = 60.0, **device: Any) -> Config:
    return apply_changes(
        Config(),
        {
            "device": {"name": room, "peer_timeout_s": timeout_s, **device},
            "mood": {"min_switch_interval_s": hold_s},
            "mqtt": {"enabled": True},
            "spotify": {"device_name": f"{room} speaker"},
        },
    )


@dataclass
class Simulated:
    """A device without camera, model or player: its coordinator and its status board."""

    device_id: str
    config: Config
    clock: Clock
    status: StatusBoard = field(default_factory=StatusBoard)
    coordinator: Coordinator = field(init=False)

    def __post_init__(self) -> None:
        self.coordinator = Coordinator(
            self.device_id, lambda: self.config, self.status, self.clock.monotonic, self.clock.wall
        )
        self.status.update(spotify_account=ACCOUNT)
        self.coordinator.connected()

    @property
    def topic(self) -> str:
        return account_topic(ACCOUNT, self.device_id)


class Network:
    """Delivers every announcement to the other devices `latency` seconds later."""

    def __init__(self, devices: list[Simulated], clock: Clock, latency: float) -> None:
        self.devices, self.clock, self.latency = devices, clock, latency
        self._queue: list[tuple[float, int, str, str, bytes]] = []
        self._sequence = 0
        self.sent = 0
        self.up = True

    def step(self) -> list[Decision]:
        """What has arrived by now, then one turn of every device (decide, announce)."""
        by_id = {d.device_id: d for d in self.devices}
        while self._queue and self._queue[0][0] <= self.clock.now:
            *_, to, topic, payload = heapq.heappop(self._queue)
            if to in by_id:
                by_id[to].coordinator.heard(topic, payload.encode())
        decisions = [d.coordinator.decide() for d in self.devices]
        for device in self.devices:
            payload = device.coordinator.outgoing()
            if payload is not None and self.up:
                self.sent += 1
                for other in self.devices:
                    if other is not device:
                        self._sequence += 1
                        item = (self.clock.now + self.latency, self._sequence)
                        heapq.heappush(self._queue, (*item, other.device_id, device.topic, payload))
        return decisions


def run_house(
    devices: list[Simulated], network: Network, schedule: dict[float, tuple[int, bool]], end: float
) -> list[tuple[float, list[str]]]:
    """Step every 0.5 s, applying presence changes (device index, present) at their times;
    (time, ids of the devices that act as the account's driver) after each step."""
    claims = []
    clock = network.clock
    while clock.now <= end:
        for at in [t for t in schedule if t <= clock.now]:
            index, present = schedule.pop(at)
            devices[index].status.update(present=present)
        decisions = network.step()
        drivers = [d.me.device_id for d in decisions if d.claims and d.drives and d.me]
        claims.append((clock.now, drivers))
        clock.now = round(clock.now + 0.5, 3)
    return claims


def house(rooms: list[str], hold_s: float, clock: Clock, **device: Any) -> list[Simulated]:
    return [
        Simulated(f"{i:08x}", device_config(room, hold_s, **device), clock)
        for i, room in enumerate(rooms)
    ]


def hand_overs(claims: list[tuple[float, list[str]]]) -> list[tuple[float, str]]:
    """(time, new driver) each time the driver is another device than before."""
    changes, current = [], None
    for at, claiming in claims:
        if len(claiming) == 1 and claiming[0] != current:
            current = claiming[0]
            changes.append((at, current))
    return changes


def test_rooms_in_turn_hand_the_account_over_once_each() -> None:
    """Faces in room A, then B too, then only B: A drives, B follows, then B takes over."""
    clock = Clock()
    devices = house(["Living Room", "Kitchen"], 30.0, clock)
    network = Network(devices, clock, latency=0.05)
    schedule = {1.0: (0, True), 40.0: (1, True), 100.0: (0, False)}
    claims = run_house(devices, network, schedule, end=150.0)
    # a claim plays once settled (SETTLE_S, on 0.5 s steps)
    assert hand_overs(claims) == [(2.0, devices[0].device_id), (101.5, devices[1].device_id)]
    assert all(len(claiming) <= 1 for _, claiming in claims)
    kitchen = devices[1].status.snapshot()
    assert kitchen["coordination"].startswith("driving: ")
    assert devices[0].status.get("coordination") == "standing by: Kitchen has the account"


@pytest.mark.parametrize("seed", range(4))
def test_flapping_rooms_never_ping_pong(seed: int) -> None:
    """Three rooms whose presence comes and goes at random every few seconds for an hour,
    with 0.2 s between the devices: never two drivers at once (near-simultaneous claims are
    settled before either plays), and never two hand-overs within one hold (the minimum
    switch interval)."""
    rng = random.Random(seed)
    clock = Clock()
    hold = 20.0
    devices = house(["Living Room", "Kitchen", "Bedroom"], hold, clock)
    network = Network(devices, clock, latency=0.2)
    schedule = {}
    at = 0.5
    while at < 3600:
        schedule[at] = (rng.randrange(3), rng.random() < 0.5)
        at = round(at + rng.choice([0.5, 1.0, 2.0, 5.0, 15.0]), 3)
    claims = run_house(devices, network, schedule, end=3600.0)
    assert all(len(drivers) <= 1 for _, drivers in claims)
    changes = hand_overs(claims)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(changes)]
    assert len(changes) > 20 and min(gaps) >= hold, (len(changes), sorted(gaps)[:5])


def test_a_silent_device_is_gone_after_the_peer_timeout() -> None:
    """The driver's daemon dies without a word: the others take over after the timeout."""
    clock = Clock()
    devices = house(["Living Room", "Kitchen"], 5.0, clock, timeout_s=12.0)
    network = Network(devices, clock, latency=0.05)
    schedule = {1.0: (0, True), 2.0: (1, True)}
    run_house(devices, network, schedule, end=20.0)
    assert devices[1].coordinator.decide().role == STANDING_BY
    survivors = devices[1:]
    network.devices = survivors
    claims = run_house(survivors, network, {}, end=40.0)
    taken = next(at for at, claiming in claims if claiming == [devices[1].device_id])
    assert 20.0 + 12.0 - 4.0 - 1 <= taken <= 20.0 + 12.0 + 1  # last heard ≤ 4 s before death


def test_without_the_broker_a_device_plays_on_its_own_after_the_timeout() -> None:
    clock = Clock()
    devices = house(["Living Room", "Kitchen"], 5.0, clock, timeout_s=10.0)
    network = Network(devices, clock, latency=0.05)
    run_house(devices, network, {1.0: (0, True), 2.0: (1, True)}, end=10.0)
    kitchen = devices[1].coordinator
    assert kitchen.decide().role == STANDING_BY
    kitchen.disconnected()
    clock.now += 9.0
    assert kitchen.decide().role == STANDING_BY  # a broker restart is not a reason to play
    clock.now += 1.5
    alone = kitchen.decide()
    assert alone.role == ON_ITS_OWN and alone.drives and alone.claims
    assert devices[1].status.get("coordination") == (
        "on its own: the MQTT broker has been out of reach for 10 s"
    )


def test_what_a_coordinator_ignores() -> None:
    """Its own echo, other accounts, stale retained messages, and bad payloads (logged once)."""
    clock = Clock(now=500.0)
    me, other = house(["Living Room", "Kitchen"], 5.0, clock, timeout_s=10.0)
    other.status.update(present=True)
    other.coordinator.decide()
    payload = other.coordinator.outgoing()
    assert payload is not None
    coordinator = me.coordinator
    coordinator.heard(me.topic, payload.encode())
    coordinator.heard(account_topic(account_key("neighbour"), other.device_id), payload.encode())
    assert coordinator.decide().role == ALONE
    clock.now += 11.0  # the message is now older than the timeout: a device gone for good
    coordinator.heard(other.topic, payload.encode())
    assert coordinator.decide().role == ALONE
    clock.now -= 11.0
    coordinator.heard(other.topic, payload.encode())
    assert coordinator.decide().role == STANDING_BY
    coordinator.heard(other.topic, b"")  # it left the account
    assert coordinator.decide().role == ALONE


def test_announcements_go_out_on_change_and_as_a_heartbeat() -> None:
    clock = Clock()
    (device,) = house(["Living Room"], 5.0, clock, timeout_s=30.0)
    coordinator = device.coordinator
    coordinator.decide()
    assert coordinator.outgoing() is not None
    clock.now += 5.0
    assert coordinator.outgoing() is None  # nothing new, heartbeat not due (every 10 s)
    device.status.update(present=True)
    coordinator.decide()
    assert coordinator.outgoing() is not None
    clock.now += 10.0
    assert coordinator.outgoing() is not None


def test_the_driver_may_take_over_what_a_device_that_left_started() -> None:
    """The bedroom's daemon stops while its music plays: whoever drives next may take that
    music over (it would never interrupt music no Mood Melody started)."""
    clock = Clock()
    me, bedroom = house(["Living Room", "Bedroom"], 5.0, clock)
    calm = {"context_uri": "spotify:playlist:calm", "name": "Calm", "device": "Bedroom speaker"}
    bedroom.status.update(present=True, player_state="playing", now_playing=calm)
    bedroom.coordinator.decide()
    payload = bedroom.coordinator.outgoing()
    assert payload is not None
    me.coordinator.heard(bedroom.topic, payload.encode())
    me.coordinator.heard(bedroom.topic, b"")
    me.status.update(present=True)
    decision = me.coordinator.decide()
    assert decision.role == ALONE and decision.claims
    assert decision.handover == {("spotify:playlist:calm", "Bedroom speaker")}
