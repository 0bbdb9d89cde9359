"""The pure Home Assistant layer: discovery payloads against HA's documented schema, states,
commands."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device import EMOTIONS, __version__
from device.config import MqttConfig
from device.homeassistant import (
    ENTITIES,
    FOLLOW_FACES,
    NO_FACE,
    STATES,
    UNKNOWN,
    BadCommand,
    Command,
    Layout,
    Throttle,
    discovery_messages,
    mood_event,
    parse_command,
    retained_topics,
    states_for,
)
from device.status import INITIAL

SETUP_URL = "http://moodmelody.local:8080/"
LAYOUT = Layout.from_config(MqttConfig(), "0a1b2c3d")

# -- Home Assistant's MQTT discovery schema, as data -----------------------------------------
# From the MQTT integration's documentation (home-assistant.io/integrations/mqtt and the
# page of each platform) and homeassistant/components/mqtt/abbreviations.py.

ABBREVIATIONS = {
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "cmps": "components",
    "def_ent_id": "default_entity_id",
    "dev": "device",
    "dev_cla": "device_class",
    "e": "encoding",
    "en": "enabled_by_default",
    "ent_cat": "entity_category",
    "ent_pic": "entity_picture",
    "evt_typ": "event_types",
    "exp_aft": "expire_after",
    "frc_upd": "force_update",
    "ic": "icon",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "o": "origin",
    "obj_id": "object_id",
    "off_dly": "off_delay",
    "ops": "options",
    "opt": "optimistic",
    "p": "platform",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "pl_prs": "payload_press",
    "ret": "retain",
    "stat_cla": "state_class",
    "stat_off": "state_off",
    "stat_on": "state_on",
    "stat_t": "state_topic",
    "sug_dsp_prc": "suggested_display_precision",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {
    "cns": "connections",
    "cu": "configuration_url",
    "hw": "hw_version",
    "ids": "identifiers",
    "mf": "manufacturer",
    "mdl": "model",
    "mdl_id": "model_id",
    "name": "name",
    "sa": "suggested_area",
    "sn": "serial_number",
    "sw": "sw_version",
    "via_device": "via_device",
}
ORIGIN_ABBREVIATIONS = {"name": "name", "sw": "sw_version", "url": "support_url"}

COMMON_KEYS = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "default_entity_id",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "platform",
    "qos",
    "unique_id",
}
DEVICE_SHARED_KEYS = {  # allowed at the root of a device-based message
    "device",
    "origin",
    "components",
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "state_topic",
    "command_topic",
    "qos",
    "encoding",
}
PLATFORMS: dict[str, dict[str, Any]] = {
    "sensor": {
        "required": {"state_topic"},
        "keys": {
            "state_topic",
            "device_class",
            "expire_after",
            "force_update",
            "last_reset_value_template",
            "options",
            "state_class",
            "suggested_display_precision",
            "unit_of_measurement",
            "value_template",
        },
        "device_classes": {
            "apparent_power",
            "aqi",
            "area",
            "atmospheric_pressure",
            "battery",
            "blood_glucose_concentration",
            "carbon_dioxide",
            "carbon_monoxide",
            "conductivity",
            "current",
            "data_rate",
            "data_size",
            "date",
            "distance",
            "duration",
            "energy",
            "energy_distance",
            "energy_storage",
            "enum",
            "frequency",
            "gas",
            "humidity",
            "illuminance",
            "irradiance",
            "moisture",
            "monetary",
            "nitrogen_dioxide",
            "nitrogen_monoxide",
            "nitrous_oxide",
            "ozone",
            "ph",
            "pm1",
            "pm10",
            "pm25",
            "power",
            "power_factor",
            "precipitation",
            "precipitation_intensity",
            "pressure",
            "reactive_power",
            "signal_strength",
            "sound_pressure",
            "speed",
            "sulphur_dioxide",
            "temperature",
            "timestamp",
            "volatile_organic_compounds",
            "volatile_organic_compounds_parts",
            "voltage",
            "volume",
            "volume_flow_rate",
            "volume_storage",
            "water",
            "weight",
            "wind_direction",
            "wind_speed",
        },
    },
    "binary_sensor": {
        "required": {"state_topic"},
        "keys": {
            "state_topic",
            "device_class",
            "expire_after",
            "force_update",
            "off_delay",
            "payload_off",
            "payload_on",
            "value_template",
        },
        "device_classes": {
            "battery",
            "battery_charging",
            "carbon_monoxide",
            "cold",
            "connectivity",
            "door",
            "garage_door",
            "gas",
            "heat",
            "light",
            "lock",
            "moisture",
            "motion",
            "moving",
            "occupancy",
            "opening",
            "plug",
            "power",
            "presence",
            "problem",
            "running",
            "safety",
            "smoke",
            "sound",
            "tamper",
            "update",
            "vibration",
            "window",
        },
    },
    "event": {
        "required": {"state_topic", "event_types"},
        "keys": {"state_topic", "event_types", "device_class", "value_template"},
        "device_classes": {"button", "doorbell", "motion"},
    },
    "switch": {
        "required": {"command_topic"},
        "keys": {
            "command_topic",
            "command_template",
            "device_class",
            "optimistic",
            "payload_off",
            "payload_on",
            "retain",
            "state_off",
            "state_on",
            "state_topic",
            "value_template",
        },
        "device_classes": {"outlet", "switch"},
    },
    "select": {
        "required": {"command_topic", "options"},
        "keys": {
            "command_topic",
            "command_template",
            "optimistic",
            "options",
            "retain",
            "state_topic",
            "value_template",
        },
        "device_classes": set(),
    },
    "button": {
        "required": {"command_topic"},
        "keys": {"command_topic", "command_template", "device_class", "payload_press", "retain"},
        "device_classes": {"identify", "restart", "update"},
    },
}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
ID_CHARS = re.compile(r"^[a-zA-Z0-9_-]+$")


def expand(payload: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
    """Replace abbreviations by full names; an unknown abbreviation fails the test."""
    full_names = set(table.values())
    if table is ABBREVIATIONS:
        full_names |= COMMON_KEYS | DEVICE_SHARED_KEYS
        full_names |= {key for schema in PLATFORMS.values() for key in schema["keys"]}
    expanded = {}
    for key, value in payload.items():
        assert key in table or key in full_names, f"{key!r} is not a documented key/abbreviation"
        expanded[table.get(key, key)] = value
    return expanded


def check_topic(topic: str, under: str) -> None:
    assert topic.startswith(under + "/"), topic
    assert not set(topic) & {"#", "+"} and not topic.endswith("/"), topic


def check_component(config: dict[str, Any], platform: str, layout: Layout) -> None:
    """One entity's (expanded) options against its platform's documented schema."""
    schema = PLATFORMS[platform]
    unknown = set(config) - COMMON_KEYS - schema["keys"]
    assert not unknown, f"{platform}: undocumented keys {unknown}"
    assert schema["required"] <= set(config), f"{platform}: missing {schema['required']}"
    assert "object_id" not in config, "deprecated: use default_entity_id"
    assert re.fullmatch(rf"{platform}\.[a-z0-9_]+", config["default_entity_id"])
    assert config["unique_id"].startswith(layout.node_id + "_")
    assert config["name"] and "mood melody" not in config["name"].lower()
    if "device_class" in config:
        assert config["device_class"] in schema["device_classes"], config
    if "state_class" in config:
        assert config["state_class"] in STATE_CLASSES
    if "entity_category" in config:
        assert config["entity_category"] in ENTITY_CATEGORIES
    if "icon" in config:
        assert re.fullmatch(r"mdi:[a-z0-9-]+", config["icon"])
    if platform == "sensor":
        enum = config.get("device_class") == "enum"
        assert ("options" in config) == enum, "options go with device_class enum only"
        if enum or config.get("device_class") == "timestamp":
            assert "state_class" not in config and "unit_of_measurement" not in config
    for key in ("options", "event_types"):
        if key in config:
            assert config[key] and all(isinstance(o, str) and o for o in config[key])
            assert len(set(config[key])) == len(config[key])
    for key, value in config.items():
        if key.endswith("_topic") and key != "availability_topic":
            check_topic(value, layout.base)


def check_device(device: dict[str, Any], layout: Layout) -> None:
    device = expand(device, DEVICE_ABBREVIATIONS)
    assert device["identifiers"] == [layout.node_id]
    assert device["name"] == "Mood Melody"
    assert device["manufacturer"] and device["model"]
    assert device["sw_version"] == __version__
    assert device["configuration_url"] == SETUP_URL


def check_origin(origin: dict[str, Any]) -> None:
    origin = expand(origin, ORIGIN_ABBREVIATIONS)
    assert origin["name"] and origin["sw_version"] == __version__


@pytest.mark.parametrize(
    "layout",
    [
        LAYOUT,
        Layout.from_config(
            MqttConfig(base_topic="house/living/music", discovery_prefix="ha"), "ff"
        ),
    ],
    ids=["defaults", "own-topics"],
)
def test_device_based_discovery_follows_the_documented_schema(layout: Layout) -> None:
    """One retained message at <prefix>/device/<id>/config with dev, o and cmps; each component
    valid for its platform. Breaks when a key is misspelt, undocumented or deprecated."""
    messages = discovery_messages(layout, SETUP_URL)
    assert list(messages) == [f"{layout.prefix}/device/{layout.node_id}/config"]
    assert ID_CHARS.match(layout.node_id)
    root = expand(json.loads(next(iter(messages.values()))), ABBREVIATIONS)
    assert set(root) <= DEVICE_SHARED_KEYS
    check_device(root["device"], layout)
    check_origin(root["origin"])
    assert root["availability_topic"] == f"{layout.base}/availability"
    components = root["components"]
    assert len(components) == 20
    for component_id, raw in components.items():
        assert ID_CHARS.match(component_id)
        config = expand(raw, ABBREVIATIONS)
        check_component(config, config["platform"], layout)
    unique_ids = [expand(c, ABBREVIATIONS)["unique_id"] for c in components.values()]
    assert len(set(unique_ids)) == len(unique_ids)


def test_per_entity_discovery_follows_the_documented_schema() -> None:
    """The option for HA before 2024.11: one message per entity, platform in the topic."""
    layout = Layout.from_config(MqttConfig(device_discovery=False), "0a1b2c3d")
    messages = discovery_messages(layout, SETUP_URL)
    assert len(messages) == 20
    for topic, payload in messages.items():
        prefix, platform, node, key, config_word = topic.split("/")
        assert (prefix, node, config_word) == ("homeassistant", layout.node_id, "config")
        assert ID_CHARS.match(key)
        config = expand(json.loads(payload), ABBREVIATIONS)
        assert "platform" not in config
        check_component(config, platform, layout)
        check_device(config["device"], layout)
        check_origin(config["origin"])
        assert config["availability_topic"] == layout.availability


def test_the_entities_are_the_ones_the_issue_asks_for() -> None:
    """Names, platforms and the special options (enums with a no-face value, occupancy,
    a timestamp for uptime, diagnostics)."""
    by_name = {e.name: e for e in ENTITIES}
    assert {name: e.platform for name, e in by_name.items()} == {
        "Emotion": "sensor",
        "Confidence": "sensor",
        "Presence": "binary_sensor",
        "Mood": "sensor",
        "Mood change": "event",
        "Now playing": "sensor",
        "Auto-play": "switch",
        "Camera": "switch",
        "Mood override": "select",
        "Next track": "button",
        "Pause": "button",
        "Play": "button",
        "Analysis rate": "sensor",
        "Camera state": "sensor",
        "Spotify state": "sensor",
        "Uptime": "sensor",
        "Correct mood to": "select",
        "Correct mood": "button",
        "Calibration": "sensor",
        "Coordination": "sensor",
    }
    assert set(by_name["Emotion"].options["ops"]) == {*EMOTIONS, NO_FACE}
    assert by_name["Confidence"].options["unit_of_meas"] == "%"
    assert by_name["Presence"].options["dev_cla"] == "occupancy"
    assert by_name["Mood change"].options["evt_typ"] == list(EMOTIONS)
    assert by_name["Mood override"].options["ops"] == [FOLLOW_FACES, *EMOTIONS]
    assert by_name["Correct mood to"].options["ops"] == list(EMOTIONS)
    assert by_name["Uptime"].options["dev_cla"] == "timestamp"
    diagnostics = {e.name for e in ENTITIES if e.options.get("ent_cat") == "diagnostic"}
    assert diagnostics == {
        "Analysis rate",
        "Camera state",
        "Spotify state",
        "Uptime",
        "Calibration",
    }


@pytest.mark.parametrize("device_discovery", [True, False])
def test_two_rooms_are_two_devices_that_share_nothing_retained(device_discovery: bool) -> None:
    """Two Mood Melodies on one broker: their own ids, device names after their rooms (and
    Home Assistant's suggested area), entity ids that do not clash, and no retained topic
    in common, so neither ever overwrites the other."""
    rooms = {"0a1b2c3d": "Living Room", "4e5f6a7b": "Kitchen"}
    seen: dict[str, dict[str, Any]] = {}
    for device_id, room in rooms.items():
        layout = Layout.from_config(MqttConfig(device_discovery=device_discovery), device_id)
        messages = discovery_messages(layout, SETUP_URL, room)
        configs = [expand(json.loads(p), ABBREVIATIONS) for p in messages.values()]
        device = expand(configs[0]["device"], DEVICE_ABBREVIATIONS)
        components = configs[0]["components"].values() if device_discovery else configs
        seen[room] = {
            "name": device["name"],
            "area": device["suggested_area"],
            "entities": {expand(c, ABBREVIATIONS)["default_entity_id"] for c in components},
            "retained": set(retained_topics(layout)),
        }
    living, kitchen = seen["Living Room"], seen["Kitchen"]
    assert (living["name"], kitchen["name"]) == ("Mood Melody Living Room", "Mood Melody Kitchen")
    assert (living["area"], kitchen["area"]) == ("Living Room", "Kitchen")
    assert "sensor.mood_melody_kitchen_mood" in kitchen["entities"]
    assert not living["entities"] & kitchen["entities"]
    assert not living["retained"] & kitchen["retained"]


def test_topics_come_from_keys_so_a_rename_breaks_nothing() -> None:
    """Every topic is <base>/<fixed key>[/set|/attributes]: no entity name in any topic."""
    payload = json.loads(discovery_messages(LAYOUT, SETUP_URL)[LAYOUT.discovery_topic()])
    for key, config in payload["cmps"].items():
        for abbreviation in ("stat_t", "cmd_t", "json_attr_t"):
            if abbreviation in config:
                assert re.fullmatch(
                    rf"{LAYOUT.base}/{key}(/set|/attributes)?", config[abbreviation]
                )
        assert config["uniq_id"] == f"{LAYOUT.node_id}_{key}"


def test_every_state_and_attribute_topic_has_a_publisher() -> None:
    """A discovered topic that nobody publishes would leave an entity `unknown` forever;
    a status key that does not exist would never trigger a publish."""
    published = {f"{LAYOUT.base}/{s.suffix}" for s in STATES}
    for entity in ENTITIES:
        if entity.state and entity.platform != "event":
            assert LAYOUT.state(entity.key) in published, entity.key
        if entity.attributes:
            assert LAYOUT.attributes(entity.key) in published, entity.key
    for state in STATES:
        assert state.keys <= set(INITIAL), state.suffix


def snapshot(**changes: Any) -> dict[str, Any]:
    return {**INITIAL, "started_at": 1_700_000_000.0, **changes}


def states(snap: dict[str, Any]) -> dict[str, str]:
    return {s.suffix: s.render(snap) for s in STATES}


def test_state_payloads_are_what_the_entities_accept() -> None:
    """Enum states are among the options, switches ON/OFF, numbers numeric, timestamps ISO
    with a zone: anything else Home Assistant rejects or shows wrong."""
    options = {e.key: e.options.get("ops") for e in ENTITIES}
    idle = states(snapshot())
    busy = states(
        snapshot(
            emotion="happy",
            confidence=0.834,
            scores={"happy": 0.834, "sad": 0.1},
            faces=2,
            present=True,
            mood="sad",
            mood_reason="sad for 8 s",
            mood_since=1_700_000_100.0,
            now_playing={"name": "Rainy days", "device": "Kitchen", "context_uri": "spotify:x"},
            autoplay=False,
            camera_enabled=True,
            override="angry",
            fps=4.96,
            camera_state="running",
            spotify_state="linked",
        )
    )
    assert (idle["emotion"], busy["emotion"]) == (NO_FACE, "happy")
    assert (idle["mood"], busy["mood"]) == (NO_FACE, "sad")
    assert (idle["override"], busy["override"]) == (FOLLOW_FACES, "angry")
    for state in (idle, busy):
        assert state["emotion"] in options["emotion"] and state["mood"] in options["mood"]
        assert state["override"] in options["override"]
        assert state["correct_to"] in options["correct_to"]
        assert {state["presence"], state["autoplay"], state["camera"]} <= {"ON", "OFF"}
        assert datetime.fromisoformat(state["uptime"]).utcoffset() is not None
    assert (idle["confidence"], busy["confidence"]) == (UNKNOWN, "83")
    assert json.loads(busy["emotion/attributes"]) == {"happy": 83, "sad": 10, "faces": 2}
    assert (busy["presence"], busy["autoplay"], busy["camera"]) == ("ON", "OFF", "ON")
    assert busy["fps"] == "5.0"
    assert (idle["now_playing"], busy["now_playing"]) == (UNKNOWN, "Rainy days")
    assert json.loads(busy["now_playing/attributes"])["speaker"] == "Kitchen"
    assert json.loads(busy["mood/attributes"]) == {
        "reason": "sad for 8 s",
        "since": "2023-11-14T22:15:00+00:00",
    }
    assert json.loads(idle["mood/attributes"])["since"] == UNKNOWN


def test_changed_status_keys_select_only_their_topics() -> None:
    """Publish on change: a new fps must not re-send the emotion, and keys that HA does not
    see (mqtt_state) publish nothing."""
    assert [s.suffix for s in states_for({"fps"})] == ["fps"]
    assert [s.suffix for s in states_for({"emotion"})] == ["emotion", "confidence"]
    assert [s.suffix for s in states_for({"mqtt_state", "warnings"})] == []
    throttled = {s.suffix for s in STATES if s.throttled}
    assert throttled == {"confidence", "emotion/attributes", "fps"}


def test_mood_event_fires_on_a_new_mood_with_scores_and_reason() -> None:
    """The event carries event_type (one of event_types), the top three scores and the
    reason; no event for the same mood or for nobody there."""
    snap = snapshot(
        mood="happy",
        mood_reason="happy for 8 s",
        scores={"happy": 0.7, "neutral": 0.2, "sad": 0.06, "angry": 0.04},
    )
    event = json.loads(mood_event(snap, "neutral") or "")
    assert event == {
        "event_type": "happy",
        "previous": "neutral",
        "reason": "happy for 8 s",
        "scores": {"happy": 70, "neutral": 20, "sad": 6},
    }
    assert list(event["scores"]) == ["happy", "neutral", "sad"]
    assert json.loads(mood_event(snap, None) or "")["previous"] == NO_FACE
    assert mood_event(snap, "happy") is None
    assert mood_event(snapshot(mood=None), "happy") is None


def test_throttle_lets_one_through_per_interval() -> None:
    throttle = Throttle(5.0)
    assert throttle.wait_s(100.0) == 0
    throttle.sent(100.0)
    assert throttle.wait_s(101.0) == pytest.approx(4.0)
    assert throttle.wait_s(105.0) == 0


def test_retained_topics_cover_discovery_availability_and_states_but_not_events() -> None:
    topics = retained_topics(LAYOUT)
    assert LAYOUT.discovery_topic() in topics and LAYOUT.availability in topics
    assert LAYOUT.state("emotion") in topics and LAYOUT.attributes("mood") in topics
    assert LAYOUT.state("mood_change") not in topics


def test_layout_defaults_and_overrides() -> None:
    assert LAYOUT.base == "moodmelody/0a1b2c3d"
    assert LAYOUT.birth == "homeassistant/status"
    assert LAYOUT.commands == "moodmelody/0a1b2c3d/+/set"
    own = Layout.from_config(MqttConfig(base_topic="a/b", discovery_prefix="ha"), "0a1b2c3d")
    assert (own.availability, own.birth) == ("a/b/availability", "ha/status")


@pytest.mark.parametrize(
    ("key", "payload", "expected"),
    [
        ("autoplay", b"ON", Command("autoplay", True)),
        ("autoplay", b"off", Command("autoplay", False)),
        ("camera", b" OFF\n", Command("camera", False)),
        ("override", b"happy", Command("override", "happy")),
        ("override", b"follow faces", Command("override", None)),
        ("override", b"none", Command("override", None)),  # the old option, still accepted
        ("override", b"None", Command("override", None)),
        ("next_track", b"PRESS", Command("next_track")),
        ("pause", b"PRESS", Command("pause")),
        ("play", b"PRESS", Command("play")),
        ("correct_to", b"Neutral", Command("correct_to", "neutral")),
        ("correct", b"PRESS", Command("correct")),
    ],
)
def test_valid_commands_parse(key: str, payload: bytes, expected: Command) -> None:
    assert parse_command(LAYOUT, LAYOUT.command(key), payload) == expected


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("moodmelody/0a1b2c3d/autoplay/set", b"maybe", "ON or OFF"),
        ("moodmelody/0a1b2c3d/autoplay/set", b"", "ON or OFF"),
        ("moodmelody/0a1b2c3d/override/set", b"ecstatic", "one of"),
        ("moodmelody/0a1b2c3d/correct_to/set", b"none", "one of"),
        ("moodmelody/0a1b2c3d/next_track/set", b"ON", "PRESS"),
        ("moodmelody/0a1b2c3d/camera/set", b"\xff\xfe", "UTF-8"),
        ("moodmelody/0a1b2c3d/camera/set", b"O" * 65, "longer than"),
        ("moodmelody/0a1b2c3d/emotion/set", b"happy", "no such command"),
        ("moodmelody/0a1b2c3d/restart/set", b"PRESS", "no such command"),
        ("moodmelody/other/autoplay/set", b"ON", "not a command topic"),
    ],
)
def test_bad_commands_say_why(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(BadCommand, match=reason):
        parse_command(LAYOUT, topic, payload)


@given(
    topic=st.one_of(st.sampled_from([LAYOUT.command(e.key) for e in ENTITIES]), st.text()),
    payload=st.binary(max_size=100),
)
def test_any_message_is_a_command_or_a_reason(topic: str, payload: bytes) -> None:
    """Fuzzed input never raises anything but BadCommand, and what parses is in range."""
    try:
        command = parse_command(LAYOUT, topic, payload)
    except BadCommand:
        return
    assert command.value in {True, False, None, *EMOTIONS}


def home_assistant_select_option(payload: str, options: list[str], shown: str | None) -> str | None:
    """The option Home Assistant's MQTT select shows after a state message, as its
    `homeassistant/components/mqtt/select.py` (2026.2) decides: a payload equal to
    PAYLOAD_NONE ("None") in any case clears the selection (the state reads `unknown`); one
    not among the options is logged as an error and ignored (`shown` stays); else that one."""
    if payload.lower() == "none":
        return None
    if payload not in options:
        return shown
    return payload


def test_home_assistant_can_show_every_option_of_every_select() -> None:
    """Seen from a real Home Assistant: the Mood override read `unknown` at start and after
    choosing its `none` option, because HA's select takes `none` for "nothing selected".
    Every state the device publishes for a select must be shown by HA as that option."""
    selects = {e.key: e.options["ops"] for e in ENTITIES if e.platform == "select"}
    assert selects, "the device has selects"
    for key, options in selects.items():
        (state,) = [s for s in STATES if s.suffix == key]
        for option in options:
            value = {"override": option if option in EMOTIONS else None, "correct_to": option}
            snapshot = {**INITIAL, key: value[key]}
            payload = state.render(snapshot)
            assert home_assistant_select_option(payload, options, "previous") == option, (
                key,
                payload,
            )
        initial = state.render(INITIAL)
        assert home_assistant_select_option(initial, options, None) in options, (key, initial)
