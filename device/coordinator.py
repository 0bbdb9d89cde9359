"""This device's part in sharing a Spotify account with the other Mood Melodies of the home.

`Coordinator` keeps what this device heard from the others (through the MQTT bridge, which
does all the talking), builds what it says about itself, and decides with
`device.coordination`'s rule whether it drives the account. Any thread may ask; the clocks are
injected. Without the broker for `[device] peer_timeout_s` it plays on its own and says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from device.config import Config
from device.coordination import (
    OFF,
    ON_ITS_OWN,
    Announcement,
    Decision,
    Member,
    Playing,
    account_subscription,
    account_topic,
    decide,
    live,
    room_name,
)
from device.status import StatusBoard

logger = logging.getLogger(__name__)

HEARTBEATS_PER_TIMEOUT = 3
"""A device repeats its announcement this often per peer timeout, so one lost message never
makes it look gone."""
STATUS_KEYS = frozenset(
    ("present", "override", "autoplay", "now_playing", "player_state", "mood", "spotify_account")
)
"""The status keys that change what this device announces or decides."""

DecisionListener = Callable[[Decision], None]


class Coordinator:
    def __init__(
        self,
        device_id: str,
        config: Callable[[], Config],
        status: StatusBoard,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.device_id = device_id
        self._config = config
        self._status = status
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self._account = ""
        self._peers: dict[str, Member] = {}
        self._started: dict[str, tuple[str, str]] = {}  # device -> (context, speaker) it started
        self._rejected: set[str] = set()  # topics whose bad announcement was logged
        self._wanted_since: float | None = None
        self._claim_since: float | None = None
        self._connected = False
        self._lost_since = clock()  # not connected yet
        self._sent: tuple[Announcement, float] | None = None  # (what, when) last announced
        self._decision = Decision(OFF, detail="starting")
        self._listeners: list[DecisionListener] = []

    def on_change(self, listener: DecisionListener) -> None:
        """`listener(decision)` whenever the role or the driver changes (outside the lock)."""
        self._listeners.append(listener)

    # -- what the bridge tells it ---------------------------------------------------------

    def connected(self) -> None:
        with self._lock:
            self._connected = True
            self._sent = None  # announce again: a restarted broker may have lost it

    def disconnected(self) -> None:
        with self._lock:
            if self._connected:
                self._connected, self._lost_since = False, self._clock()

    def heard(self, topic: str, payload: bytes) -> None:
        """An announcement of the account's topic (empty: the device has left)."""
        with self._lock:
            self._follow_account()
            prefix = account_subscription(self._account)[:-1]
            device = topic[len(prefix) :]
            if not (self._account and topic.startswith(prefix)) or device == self.device_id:
                return
            if not payload:
                if self._peers.pop(device, None) is not None:
                    logger.info("coordination: %s left the account", device)
                return
            try:
                said = Announcement.from_json(payload)
                if said.device_id != device:
                    raise ValueError(f"it names device {said.device_id!r}")
            except ValueError as err:
                if topic not in self._rejected:
                    self._rejected.add(topic)
                    logger.warning("coordination: ignoring the announcement on %s: %s", topic, err)
                return
            self._rejected.discard(topic)
            if self._wall_clock() - said.sent_at >= self._timeout():
                return  # a retained message of a device long gone
            if device not in self._peers:
                logger.info("coordination: %s (%s) is on the account", said.name, device)
            self._peers[device] = Member(said, self._clock())
            if said.playing is not None and said.playing.context_uri:
                self._started[device] = (said.playing.context_uri, said.playing.speaker)

    # -- what it says ---------------------------------------------------------------------

    def topics(self) -> tuple[str, str] | None:
        """(the subscription, this device's announcement topic) while it coordinates."""
        with self._lock:
            if not self._active():
                return None
            return account_subscription(self._account), account_topic(self._account, self.device_id)

    def outgoing(self) -> str | None:
        """The announcement to publish now (as of the last `decide`), if it changed or a
        heartbeat is due; else None."""
        with self._lock:
            if not (self._connected and self._active()):
                return None
            now = self._clock()
            said = self._announcement(now)
            if self._sent is not None:
                last, at = self._sent
                same = _steady(last) == _steady(said)
                if same and now - at < self._timeout() / HEARTBEATS_PER_TIMEOUT:
                    return None
            self._sent = (said, now)
            return said.to_json()

    # -- what it decides ------------------------------------------------------------------

    def decide(self) -> Decision:
        """Whether this device drives the account now; listeners hear about a change."""
        with self._lock:
            old = self._decision
            self._decision = new = self._evaluate()
            changed = (old.role, _id(old.driver)) != (new.role, _id(new.driver))
        self._status.update(coordination=new.describe(), coordination_info=new.attributes())
        if changed:
            logger.info("coordination: %s", new.describe())
            for listener in self._listeners:
                listener(new)
        return new

    def _evaluate(self) -> Decision:
        snapshot = self._status.snapshot()
        config = self._config()
        now = self._clock()
        self._follow_account()
        wants = config.player.autoplay and bool(snapshot["present"] or snapshot["override"])
        if not wants:
            self._wanted_since = None
        elif self._wanted_since is None:
            self._wanted_since = now
        if not self._active():
            self._claim_since = None
            return Decision(OFF, detail=self._why_off(config))
        me = Member(self._announcement(now, snapshot, config), now)
        lost_for = now - self._lost_since
        if not self._connected and lost_for >= self._timeout():
            decision = replace(
                decide(me, (), now),
                role=ON_ITS_OWN,
                detail=f"the MQTT broker has been out of reach for {lost_for:.0f} s",
            )
        else:  # cut off for a while: the others as they were when the broker went
            heard_until = now if self._connected else self._lost_since
            peers = live(self._peers.values(), heard_until, self._timeout())
            decision = replace(decide(me, peers, now), handover=frozenset(self._started.values()))
        if decision.claims and config.player.autoplay:
            self._claim_since = self._claim_since if self._claim_since is not None else now
        else:
            self._claim_since = None
        return decision

    def _follow_account(self) -> None:
        """A newly linked account: forget everything heard about the previous one."""
        account = self._status.get("spotify_account")
        if account != self._account:
            self._account, self._peers, self._started, self._sent = account, {}, {}, None

    def _active(self) -> bool:
        config = self._config()
        return config.device.coordinate and config.mqtt.enabled and bool(self._account)

    def _why_off(self, config: Config) -> str:
        if not config.device.coordinate:
            return "turned off on this device ([device] coordinate)"
        if not config.mqtt.enabled:
            return "other rooms are found through the MQTT broker, which is not set up"
        return "no Spotify account linked"

    def _timeout(self) -> float:
        return self._config().device.peer_timeout_s

    def _announcement(
        self, now: float, snapshot: dict[str, Any] | None = None, config: Config | None = None
    ) -> Announcement:
        snapshot = snapshot or self._status.snapshot()
        config = config or self._config()
        playing = snapshot["now_playing"] or {}
        return Announcement(
            device_id=self.device_id,
            name=room_name(config.device.name, self.device_id),
            priority=config.device.priority,
            speaker=config.spotify.device_name,
            wanted_for_s=_age(now, self._wanted_since),
            forced=bool(snapshot["override"]),
            driving_for_s=_age(now, self._claim_since),
            hold_s=config.mood.min_switch_interval_s,
            mood=snapshot["mood"],
            playing=Playing(
                context_uri=str(playing.get("context_uri", "")),
                name=str(playing.get("name", "")),
                speaker=str(playing.get("device", "")),
                state=str(snapshot["player_state"]),
            )
            if playing
            else None,
            sent_at=self._wall_clock(),
        )


def _age(now: float, since: float | None) -> float | None:
    return None if since is None else round(now - since, 2)


def _steady(said: Announcement) -> Announcement:
    """The announcement without what changes with time alone (ages, the send time)."""
    return replace(
        said,
        wanted_for_s=None if said.wanted_for_s is None else 0.0,
        driving_for_s=None if said.driving_for_s is None else 0.0,
        sent_at=0.0,
    )


def _id(member: Member | None) -> str | None:
    return None if member is None else member.device_id
