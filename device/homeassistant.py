"""Home Assistant over MQTT, the pure part: topics, discovery payloads, states, commands.

No I/O and no clock here: `device.mqtt` does the talking. Discovery payloads use Home
Assistant's documented abbreviations (`stat_t`, `uniq_id`, ...). Every topic is built
from a fixed entity key, never from a user-editable name, so a rename breaks nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from device import EMOTIONS, __version__
from device.config import MqttConfig

DEVICE_NAME = "Mood Melody"
NO_FACE = "none"
"""The Emotion sensor's state when no face is seen (and the Mood's when nobody is there)."""
FOLLOW_FACES = "follow faces"
"""The Mood override's option for no override. Not `none`: Home Assistant's MQTT select reads
a state of `none` (any case) as "no option selected", so it could never show it."""
LEGACY_NO_OVERRIDE = "none"
"""Still accepted as an override command (older automations send it)."""
UNKNOWN = "None"
"""Home Assistant's PAYLOAD_NONE: the entity's state becomes `unknown`."""
ONLINE, OFFLINE = "online", "offline"
MAX_COMMAND_BYTES = 64

Snapshot = Mapping[str, Any]


@dataclass(frozen=True)
class Layout:
    """Where everything of one device lives on the broker."""

    device_id: str
    base: str  # state and command topics: <base>/<entity key>[/set|/attributes]
    prefix: str  # Home Assistant's discovery prefix
    device_discovery: bool  # one device-based message, else one message per entity

    @classmethod
    def from_config(cls, mqtt: MqttConfig, device_id: str) -> Layout:
        return cls(
            device_id=device_id,
            base=mqtt.base_topic or f"moodmelody/{device_id}",
            prefix=mqtt.discovery_prefix,
            device_discovery=mqtt.device_discovery,
        )

    @property
    def node_id(self) -> str:
        return f"moodmelody_{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def commands(self) -> str:
        """The subscription that receives every command."""
        return f"{self.base}/+/set"

    @property
    def birth(self) -> str:
        """Home Assistant announces `online` here when it (re)starts."""
        return f"{self.prefix}/status"

    def state(self, key: str) -> str:
        return f"{self.base}/{key}"

    def attributes(self, key: str) -> str:
        return f"{self.base}/{key}/attributes"

    def command(self, key: str) -> str:
        return f"{self.base}/{key}/set"

    def discovery_topic(self, entity: Entity | None = None) -> str:
        """The device-based topic (no entity), or one entity's own topic."""
        if entity is None:
            return f"{self.prefix}/device/{self.node_id}/config"
        return f"{self.prefix}/{entity.platform}/{self.node_id}/{entity.key}/config"


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity of the device; `options` are platform options, abbreviated."""

    key: str  # stable: in unique_id, default_entity_id and every topic
    platform: str
    name: str  # shown in Home Assistant; the user may rename it there
    options: Mapping[str, Any] = field(default_factory=dict)
    state: bool = True
    command: bool = False
    attributes: bool = False


_MOODS = [*EMOTIONS, NO_FACE]
OVERRIDE_OPTIONS = (FOLLOW_FACES, *EMOTIONS)
_DIAGNOSTIC = {"ent_cat": "diagnostic"}

ENTITIES: tuple[Entity, ...] = (
    Entity(
        "emotion",
        "sensor",
        "Emotion",
        {"dev_cla": "enum", "ops": _MOODS, "ic": "mdi:emoticon-outline"},
        attributes=True,
    ),
    Entity(
        "confidence",
        "sensor",
        "Confidence",
        {"unit_of_meas": "%", "stat_cla": "measurement", "ic": "mdi:gauge"},
    ),
    Entity("presence", "binary_sensor", "Presence", {"dev_cla": "occupancy"}),
    Entity(
        "mood",
        "sensor",
        "Mood",
        {"dev_cla": "enum", "ops": _MOODS, "ic": "mdi:music-circle-outline"},
        attributes=True,
    ),
    Entity(
        "mood_change",
        "event",
        "Mood change",
        {"evt_typ": list(EMOTIONS), "ic": "mdi:swap-horizontal"},
    ),
    Entity("now_playing", "sensor", "Now playing", {"ic": "mdi:playlist-music"}, attributes=True),
    Entity("autoplay", "switch", "Auto-play", {"ic": "mdi:play-circle-outline"}, command=True),
    Entity("camera", "switch", "Camera", {"ic": "mdi:cctv"}, command=True),
    Entity(
        "override",
        "select",
        "Mood override",
        {"ops": list(OVERRIDE_OPTIONS), "ic": "mdi:hand-back-right-outline"},
        command=True,
    ),
    Entity(
        "next_track", "button", "Next track", {"ic": "mdi:skip-next"}, state=False, command=True
    ),
    Entity("pause", "button", "Pause", {"ic": "mdi:pause"}, state=False, command=True),
    Entity("play", "button", "Play", {"ic": "mdi:play"}, state=False, command=True),
    # "Wrong mood": choose what it was, then press; the last seconds' faces get that label.
    Entity(
        "correct_to",
        "select",
        "Correct mood to",
        {"ops": list(EMOTIONS), "ic": "mdi:tag-edit-outline"},
        command=True,
    ),
    Entity(
        "correct",
        "button",
        "Correct mood",
        {"ic": "mdi:account-check-outline"},
        state=False,
        command=True,
    ),
    Entity("calibration", "sensor", "Calibration", {"ic": "mdi:tune", **_DIAGNOSTIC}),
    Entity(
        "fps",
        "sensor",
        "Analysis rate",
        {"unit_of_meas": "fps", "stat_cla": "measurement", "ic": "mdi:speedometer", **_DIAGNOSTIC},
    ),
    Entity(
        "camera_state",
        "sensor",
        "Camera state",
        {"ic": "mdi:camera-outline", **_DIAGNOSTIC},
        attributes=True,
    ),
    Entity("spotify_state", "sensor", "Spotify state", {"ic": "mdi:spotify", **_DIAGNOSTIC}),
    # Several Mood Melodies on one account: who drives playback (device.coordination).
    Entity("coordination", "sensor", "Coordination", {"ic": "mdi:home-group"}, attributes=True),
    Entity("uptime", "sensor", "Uptime", {"dev_cla": "timestamp", **_DIAGNOSTIC}),
)
ENTITY_BY_KEY = {entity.key: entity for entity in ENTITIES}


# -- discovery -------------------------------------------------------------------------------


def device_name(room: str) -> str:
    """The Home Assistant device: "Mood Melody Kitchen" for a device in the Kitchen."""
    return f"{DEVICE_NAME} {room}" if room else DEVICE_NAME


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.casefold()).strip("_")


def _device(layout: Layout, setup_url: str, room: str) -> dict[str, Any]:
    device = {
        "ids": [layout.node_id],
        "name": device_name(room),
        "mf": "Mood Melody project",
        "mdl": "Mood Melody (Raspberry Pi)",
        "sw": __version__,
    }
    if setup_url:
        device["cu"] = setup_url
    if room:
        device["sa"] = room  # Home Assistant's suggested area
    return device


_ORIGIN = {"name": "moodmelody", "sw": __version__}


def component_config(entity: Entity, layout: Layout, room: str = "") -> dict[str, Any]:
    """One entity's options, as in a device-based message's `cmps` (with `p`). The entity id
    Home Assistant suggests names the room, so two devices' entities never clash."""
    object_id = _slug(device_name(room))
    config: dict[str, Any] = {
        "p": entity.platform,
        "name": entity.name,
        "uniq_id": f"{layout.node_id}_{entity.key}",
        "def_ent_id": f"{entity.platform}.{object_id}_{entity.key}",
        **entity.options,
    }
    if entity.state:
        config["stat_t"] = layout.state(entity.key)
    if entity.command:
        config["cmd_t"] = layout.command(entity.key)
    if entity.attributes:
        config["json_attr_t"] = layout.attributes(entity.key)
    return config


def discovery_messages(layout: Layout, setup_url: str, room: str = "") -> dict[str, str]:
    """Discovery topic -> JSON payload (publish retained), in the layout's style; `room` is
    `[device] name`."""
    shared = {
        "dev": _device(layout, setup_url, room),
        "o": _ORIGIN,
        "avty_t": layout.availability,
        "qos": 1,
    }
    if layout.device_discovery:
        components = {e.key: component_config(e, layout, room) for e in ENTITIES}
        return {layout.discovery_topic(): json.dumps({**shared, "cmps": components})}
    messages = {}
    for entity in ENTITIES:
        config = component_config(entity, layout, room)
        del config["p"]  # the platform is in the topic
        messages[layout.discovery_topic(entity)] = json.dumps({**shared, **config})
    return messages


def retained_topics(layout: Layout) -> list[str]:
    """Every retained topic the device writes: what removing the device must clear."""
    topics = [*discovery_messages(layout, "").keys(), layout.availability]
    topics += [layout.base + "/" + state.suffix for state in STATES]
    return topics


# -- states ----------------------------------------------------------------------------------


def _on_off(value: Any) -> str:
    return "ON" if value else "OFF"


def _percent(probability: float) -> int:
    return round(100 * probability)


def _timestamp(seconds: float) -> str:
    """ISO 8601 with the zone, as a timestamp sensor wants; UNKNOWN for 'never'."""
    if not seconds or not math.isfinite(seconds):
        return UNKNOWN
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str:
    return str(value) if value else UNKNOWN


def _scores(snapshot: Snapshot) -> dict[str, int]:
    scores = snapshot["scores"] or {}
    return {emotion: _percent(scores[emotion]) for emotion in EMOTIONS if emotion in scores}


def _confidence(snapshot: Snapshot) -> str:
    if snapshot["emotion"] is None:
        return UNKNOWN
    return str(_percent(snapshot["confidence"]))


def _now_playing_attributes(snapshot: Snapshot) -> str:
    playing = snapshot["now_playing"] or {}
    return json.dumps(
        {
            "speaker": playing.get("device", ""),
            "context_uri": playing.get("context_uri", ""),
            "player_state": snapshot["player_state"],
            "player_detail": snapshot["player_detail"],
        }
    )


@dataclass(frozen=True)
class StateTopic:
    """A retained state topic: which status keys feed it and how its payload is made."""

    suffix: str  # after <base>/
    keys: frozenset[str]
    render: Callable[[Snapshot], str]
    throttled: bool = False  # changes with every frame: rate-limited


def _state(
    suffix: str, keys: str, render: Callable[[Snapshot], str], throttled: bool = False
) -> StateTopic:
    return StateTopic(suffix, frozenset(keys.split()), render, throttled)


STATES: tuple[StateTopic, ...] = (
    _state("emotion", "emotion", lambda s: s["emotion"] or NO_FACE),
    _state(
        "emotion/attributes",
        "scores faces",
        lambda s: json.dumps({**_scores(s), "faces": s["faces"]}),
        throttled=True,
    ),
    _state("confidence", "confidence emotion", _confidence, throttled=True),
    _state("presence", "present", lambda s: _on_off(s["present"])),
    _state("mood", "mood", lambda s: s["mood"] or NO_FACE),
    _state(
        "mood/attributes",
        "mood_reason mood_since",
        lambda s: json.dumps({"reason": s["mood_reason"], "since": _timestamp(s["mood_since"])}),
    ),
    _state("now_playing", "now_playing", lambda s: _text((s["now_playing"] or {}).get("name"))),
    _state(
        "now_playing/attributes", "now_playing player_state player_detail", _now_playing_attributes
    ),
    _state("autoplay", "autoplay", lambda s: _on_off(s["autoplay"])),
    _state("camera", "camera_enabled", lambda s: _on_off(s["camera_enabled"])),
    _state("override", "override", lambda s: s["override"] or FOLLOW_FACES),
    _state("correct_to", "correct_to", lambda s: s["correct_to"]),
    _state("calibration", "calibration", lambda s: _text(s["calibration"])),
    _state("fps", "fps", lambda s: f"{s['fps']:.1f}", throttled=True),
    _state("camera_state", "camera_state", lambda s: _text(s["camera_state"])),
    _state(
        "camera_state/attributes",
        "camera_source camera_detail",
        lambda s: json.dumps({"source": s["camera_source"], "detail": s["camera_detail"]}),
    ),
    _state("spotify_state", "spotify_state", lambda s: _text(s["spotify_state"])),
    _state("coordination", "coordination", lambda s: _text(s["coordination"][:255])),
    _state(
        "coordination/attributes",
        "coordination_info",
        lambda s: json.dumps(s["coordination_info"]),
    ),
    _state("uptime", "started_at", lambda s: _timestamp(s["started_at"])),
)


def states_for(changed: Iterable[str]) -> list[StateTopic]:
    """The state topics that a change of these status keys affects."""
    keys = set(changed)
    return [state for state in STATES if state.keys & keys]


def mood_event(snapshot: Snapshot, previous: str | None) -> str | None:
    """The Mood change event's payload when the mood became a new one, else None."""
    mood = snapshot["mood"]
    if mood is None or mood == previous:
        return None
    top = sorted(_scores(snapshot).items(), key=lambda item: item[1], reverse=True)[:3]
    return json.dumps(
        {
            "event_type": mood,
            "previous": previous or NO_FACE,
            "reason": snapshot["mood_reason"],
            "scores": dict(top),
        }
    )


class Throttle:
    """At most one publish per `interval_s`; what changed meanwhile waits for its turn."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: float | None = None

    def wait_s(self, now: float) -> float:
        """Seconds until the next publish is allowed; 0 when it is now."""
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval_s - now)

    def sent(self, now: float) -> None:
        self._last = now


# -- commands --------------------------------------------------------------------------------


class BadCommand(ValueError):
    """A command message that is ignored; the message says why."""


@dataclass(frozen=True)
class Command:
    """A validated command: `key` is the entity; `value` a bool (switch), a mood or None
    (select: None is "follow faces", or the old "none"), or None (button)."""

    key: str
    value: bool | str | None = None


_SWITCH = {"ON": True, "OFF": False}


def parse_command(layout: Layout, topic: str, payload: bytes) -> Command:
    """Validate one message from the command subscription; raises BadCommand."""
    prefix, suffix = layout.base + "/", "/set"
    if not (topic.startswith(prefix) and topic.endswith(suffix)):
        raise BadCommand("not a command topic")
    entity = ENTITY_BY_KEY.get(topic[len(prefix) : -len(suffix)])
    if entity is None or not entity.command:
        raise BadCommand("no such command")
    if len(payload) > MAX_COMMAND_BYTES:
        raise BadCommand(f"payload longer than {MAX_COMMAND_BYTES} bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadCommand("payload is not UTF-8 text") from None
    if entity.platform == "switch":
        if text.upper() not in _SWITCH:
            raise BadCommand("expected ON or OFF")
        return Command(entity.key, _SWITCH[text.upper()])
    if entity.platform == "select":
        choice, options = text.lower(), entity.options["ops"]
        if entity.key == "override" and choice in (FOLLOW_FACES, LEGACY_NO_OVERRIDE):
            return Command(entity.key, None)
        if choice not in options:
            raise BadCommand(f"expected one of {', '.join(options)}")
        return Command(entity.key, choice)
    if text != "PRESS":
        raise BadCommand("expected PRESS")
    return Command(entity.key)
