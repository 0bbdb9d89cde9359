"""Several Mood Melodies on one Spotify account: who drives playback. The pure part.

Spotify plays on one device per account at a time, so of the Mood Melodies that share an
account exactly one, the driver, starts, moves and pauses playback; the others keep following
their rooms' moods and reporting them, and leave playback alone. Each device announces itself,
retained, on ``moodmelody/accounts/<account key>/<device id>`` (`Announcement`), and every
device applies the same rule (`choose_driver`) to what it heard:

1. The driver keeps the account while someone is in front of it, and in any case for its
   hold time (its minimum switch interval) after taking it: at most one hand-over per hold.
2. Once the driver's room is empty (for its absence time) and its hold has passed, the account
   goes to the room where someone arrived most recently. A room of higher priority takes the
   account even from an occupied room once the hold has passed; a mood override set on a
   device counts as someone there and outranks every room.
3. With nobody anywhere, the last driver keeps the account (its music paused).
4. Two claims made at almost the same moment (within `CONTEST_S`: the devices had not yet
   heard each other) are settled by override, priority, then device id; else the earlier
   claim stands. A device that claims the account waits `SETTLE_S` before it plays, so such
   a contest is settled before anyone touches playback.

Announcements carry ages ("present for 40 s"), not times: each device turns them into its own
monotonic clock when they arrive, so the rule never compares two devices' clocks. Only a stale
retained message (a device gone for good) is spotted by its wall-clock time.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

ROOT = "moodmelody/accounts"
VERSION = 1
CONTEST_S = 5.0
"""Claims closer than this were made before the devices heard each other: settled by rank."""
SETTLE_S = 1.0
"""A new claim waits this long (well above the broker's delivery time) before it plays."""


def account_key(user_id: str) -> str:
    """The account's name on the broker: a digest of the Spotify user id, not the id itself."""
    return hashlib.sha256(f"moodmelody-account:{user_id}".encode()).hexdigest()[:12]


def account_topic(key: str, device_id: str) -> str:
    return f"{ROOT}/{key}/{device_id}"


def account_subscription(key: str) -> str:
    """Every device on one account: a device hears only its own account's traffic."""
    return f"{ROOT}/{key}/+"


def room_name(name: str, device_id: str) -> str:
    """What a device is called: its room, else "Mood Melody <id>"."""
    return name or f"Mood Melody {device_id}"


@dataclass(frozen=True)
class Playing:
    """What a device last started on the account, and how it stood when announced."""

    context_uri: str
    name: str
    speaker: str
    state: str  # the device's player_state: playing, paused, waiting...


@dataclass(frozen=True)
class Announcement:
    """One device about itself. Ages are seconds before `sent_at`; None means "not"."""

    device_id: str
    name: str  # its room
    priority: int
    speaker: str  # the Spotify Connect speaker it plays on
    wanted_for_s: float | None  # someone there (or an override) with auto-play on, since
    forced: bool  # a mood override is set on it
    driving_for_s: float | None  # it drives the account, since
    hold_s: float  # how long it keeps the account after taking it
    mood: str | None
    playing: Playing | None
    sent_at: float  # the sender's wall clock

    def to_json(self) -> str:
        return json.dumps({"v": VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, payload: bytes) -> Announcement:
        """Parse and check an announcement; ValueError says what is wrong."""
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"not JSON: {err}") from None
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise ValueError(f"not a version {VERSION} announcement")
        try:
            playing = data["playing"]
            return cls(
                device_id=_text(data["device_id"]),
                name=_text(data["name"]),
                priority=int(data["priority"]),
                speaker=_text(data["speaker"]),
                wanted_for_s=_age(data["wanted_for_s"]),
                forced=bool(data["forced"]),
                driving_for_s=_age(data["driving_for_s"]),
                hold_s=_seconds(data["hold_s"]),
                mood=None if data["mood"] is None else _text(data["mood"]),
                playing=None if playing is None else Playing(**_strings(playing)),
                sent_at=_seconds(data["sent_at"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"bad field: {err}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError("playing is not an object")
    return {key: _text(value[key]) for key in ("context_uri", "name", "speaker", "state")}


def _seconds(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} is not a time")
    return number


def _age(value: Any) -> float | None:
    return None if value is None else _seconds(value)


@dataclass(frozen=True)
class Member:
    """A device on the account as this one sees it: its announcement, heard at `heard_at`
    on this device's monotonic clock (for this device itself: now)."""

    said: Announcement
    heard_at: float

    @property
    def device_id(self) -> str:
        return self.said.device_id

    @property
    def wanted_since(self) -> float | None:
        age = self.said.wanted_for_s
        return None if age is None else self.heard_at - age

    @property
    def driving_since(self) -> float | None:
        age = self.said.driving_for_s
        return None if age is None else self.heard_at - age

    def rank_class(self) -> tuple[bool, int]:
        return (self.said.forced, self.said.priority)


def live(members: Iterable[Member], now: float, timeout_s: float) -> list[Member]:
    """The members heard from within `timeout_s`."""
    return [m for m in members if now - m.heard_at < timeout_s]


def _incumbent(members: list[Member]) -> Member | None:
    """The driver claim that stands: the earliest, with near-simultaneous claims settled by rank."""
    claims = [m for m in members if m.driving_since is not None]
    if not claims:
        return None
    earliest = min(m.driving_since for m in claims if m.driving_since is not None)
    contest = [m for m in claims if (m.driving_since or 0.0) - earliest < CONTEST_S]
    return min(contest, key=lambda m: (not m.said.forced, -m.said.priority, m.device_id))


def _best(members: list[Member]) -> Member | None:
    """Of the members someone wants to hear, the one that should have the account."""
    wanting = [m for m in members if m.wanted_since is not None]
    return min(
        wanting,
        key=lambda m: (not m.said.forced, -m.said.priority, -(m.wanted_since or 0.0), m.device_id),
        default=None,
    )


def choose_driver(members: Iterable[Member], now: float) -> Member | None:
    """The member that drives the account now (the rule in this module's docstring); None when
    nobody drives yet and nobody wants music."""
    members = list(members)
    incumbent, best = _incumbent(members), _best(members)
    if incumbent is None or best is None or best.device_id == incumbent.device_id:
        return incumbent or best
    held = now - (incumbent.driving_since or now) < incumbent.said.hold_s
    if held and not (best.said.forced and not incumbent.said.forced):
        return incumbent
    if incumbent.wanted_since is not None and incumbent.rank_class() >= best.rank_class():
        return incumbent
    return best


OFF, ON_ITS_OWN, ALONE, IDLE, CLAIMING, DRIVING, STANDING_BY = (
    "off",
    "on its own",
    "alone",
    "idle",
    "claiming",
    "driving",
    "standing by",
)


@dataclass(frozen=True)
class Decision:
    """What this device does about the account, and why, for the status and the player."""

    role: str  # OFF, ON_ITS_OWN, ALONE, IDLE, CLAIMING, DRIVING or STANDING_BY
    me: Member | None = None
    driver: Member | None = None
    others: tuple[Member, ...] = ()  # the other live devices on the account
    detail: str = ""  # why it is off or on its own
    handover: frozenset[tuple[str, str]] = frozenset()
    """(context URI, speaker) that the other devices started, also those that have left since:
    playback the driver may take over, where it would never interrupt anyone else's music."""

    @property
    def drives(self) -> bool:
        """True: play as if alone (start, move, pause); False: leave playback alone."""
        return self.role not in (STANDING_BY, CLAIMING)

    @property
    def someone_waits(self) -> bool:
        """Someone is in front of another device: it takes the account once it may."""
        return any(m.wanted_since is not None for m in self.others)

    @property
    def claims(self) -> bool:
        """This device has the account (and says so in its announcement)."""
        return self.me is not None and self.driver is not None and self.driver is self.me

    def describe(self) -> str:
        """The page's and Home Assistant's line, e.g. "standing by: Kitchen has the account"."""
        if self.role in (OFF, ON_ITS_OWN):
            return f"{self.role}: {self.detail}"
        if self.role == ALONE:
            return "alone: no other Mood Melody on this Spotify account"
        if self.role == CLAIMING:
            return "claiming: taking the account over"
        if self.role == IDLE:
            count = len(self.others) + 1
            return f"idle: nobody in front of the {count} Mood Melodies on the account"
        assert self.me is not None and self.driver is not None
        if self.role == DRIVING:
            others = len(self.others)
            peers = f"{others} other Mood Melod{'y' if others == 1 else 'ies'}"
            return f"driving: {_playing(self.me.said)} ({peers} on the account)"
        driver = self.driver.said
        if self.me.wanted_since is not None:
            return f"following: {_playing(driver)} (driven by {driver.name})"
        return f"standing by: {driver.name} has the account"

    def attributes(self) -> dict[str, Any]:
        """Home Assistant's attributes of the Coordination sensor."""
        driver = self.driver.said if self.driver else None
        return {
            "role": self.role,
            "driver": driver.name if driver else None,
            "driver_id": driver.device_id if driver else None,
            "speaker": driver.speaker if driver else None,
            "others": sorted(m.said.name for m in self.others),
        }


def _playing(said: Announcement) -> str:
    playing = said.playing
    if playing is None or playing.state != "playing":
        return f"nothing playing in {said.name}"
    what = f"{playing.name} " if playing.name else ""
    return f"playing {what}on {playing.speaker or said.speaker}"


def decide(me: Member, others: Iterable[Member], now: float) -> Decision:
    """This device's role among `others` (live members of its account, itself excluded)."""
    others = tuple(others)
    driver = choose_driver((me, *others), now)
    if driver is not None and driver.device_id == me.device_id:
        driver = me
    if not others:
        role = ALONE
    elif driver is None:
        role = IDLE
    elif driver is not me:
        role = STANDING_BY
    elif me.driving_since is None or now - me.driving_since < SETTLE_S:
        role = CLAIMING
    else:
        role = DRIVING
    return Decision(role, me, driver, others)
