"""Settings forms: HTML fields named `section.key`, typed by the config schema, saved whole."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from device.config import Config, ConfigError, apply_changes, secret_keys, sections
from device.controller import Controller


@dataclass(frozen=True)
class Field:
    """One input of a settings form, described from the config schema."""

    name: str  # "section.key"
    kind: str  # "bool" | "int" | "float" | "str" | "choice" | "secret"
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def step(self) -> str:
        return "1" if self.kind == "int" else "any"


PAGE_HELP = {
    "device.name": "Where this Mood Melody stands, e.g. Living Room. Home Assistant names the "
    "device after it, and the other rooms' Mood Melodies show it.",
    "device.priority": "With people in several rooms on one Spotify account, the room with the "
    "higher number gets the music. Equal numbers: the room that has the music keeps it while "
    "someone is there.",
    "device.coordinate": "With several Mood Melodies on one Spotify account and this broker, "
    "only one plays at a time and the others follow moods without touching the music. Off: "
    "this one plays on its own (it still never takes music playing on another speaker).",
    "player.autoplay": "When off, Mood Melody still watches and shows the mood, but leaves the "
    "music alone.",
    "player.kind": "“dry-run” plays nothing: it only shows what it would play (handy to try "
    "it out). “spotify” plays on your speaker once Spotify is linked.",
    "camera.enabled": "Turn off for privacy: nothing is looked at until you turn it back on. "
    "With the camera off nobody is seen, so the music pauses as when the room is empty.",
    "mood.dwell_s": "How long a new mood must show before the music changes. Longer is calmer.",
    "mood.min_switch_interval_s": "The music never changes playlist more often than this.",
    "mood.threshold": "How sure it must be of a mood before acting on it: 0.45 means 45 %. "
    "Higher means fewer, surer changes.",
    "mood.absent_after_s": "When nobody has been seen for this long, the music pauses. It "
    "carries on when someone comes back.",
    "mood.follow": "With several people in view: “largest” follows the face nearest the "
    "camera, “room” the average of everyone.",
    "player.quiet_hours": "No music starts by itself in these hours, e.g. 22:00-07:00. "
    "Leave empty for none.",
    "player.volume_schedule": "The volume from a time of day on, e.g. 07:00=40, 19:00=25 "
    "(percent). Leave empty to leave the volume alone.",
    "camera.fps": "How many pictures a second are looked at. 5 is plenty; fewer saves power.",
    "web.preview": "Lets you see one picture from the camera here, each face boxed with how far "
    "away it seems, and a warning when a face is too far or at the edge: a help for placing the "
    "camera. It is shown only to you and never stored.",
    "mqtt.enabled": "Connect to your Home Assistant's MQTT broker (e.g. the Mosquitto add-on).",
    "mqtt.host": "The broker's address: your Home Assistant's name or IP address.",
    "mqtt.port": "Usually 1883, or 8883 with TLS.",
    "mqtt.tls": "Encrypt the connection. The broker must be set up for it (port 8883).",
    "mqtt.ca_file": "Only for a broker with its own certificate authority: the file on this "
    "device. Leave empty otherwise.",
    "mqtt.username": "The broker's user for Mood Melody. Leave empty if it needs none.",
    "mqtt.password": "That user's password. It is never shown again.",
    "mqtt.base_topic": "Where Mood Melody's messages go. Leave empty unless you have several "
    "devices to tell apart.",
    "mqtt.discovery_prefix": "Leave as “homeassistant” unless you changed it in Home Assistant.",
    "mqtt.device_discovery": "Leave on for Home Assistant 2024.11 or newer; turn off for an "
    "older one.",
    "spotify.client_id": "From your Spotify app's settings page (step 1). It is not a secret.",
}
"""What each field of the pages means, for a person (the config file's documentation is for
someone editing the file)."""


def describe(name: str) -> Field:
    """The schema of `section.key` as a form field, with the help a person reads."""
    section, key = name.split(".")
    cls = sections()[section]
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == key)
    kind = get_type_hints(cls)[key].__name__
    if name in secret_keys():
        kind = "secret"
    elif meta["choices"]:
        kind = "choice"
    doc = PAGE_HELP.get(name, meta["doc"])
    return Field(name, kind, doc, meta["choices"] or (), meta["minimum"], meta["maximum"])


def current_values(config: Config, names: Iterable[str]) -> dict[str, Any]:
    """What the form shows; a secret shows as "" (the browser never receives it)."""
    values = {}
    for name in names:
        section, key = name.split(".")
        values[name] = "" if name in secret_keys() else getattr(getattr(config, section), key)
    return values


def submitted_values(form: Mapping[str, str], names: Iterable[str]) -> dict[str, Any]:
    """What the form shows again after a refused save: what was typed, but never a secret."""
    values: dict[str, Any] = {}
    for name in names:
        kind = describe(name).kind
        values[name] = (
            name in form if kind == "bool" else "" if kind == "secret" else form.get(name, "")
        )
    return values


def stored_secrets(config: Config, names: Iterable[str]) -> set[str]:
    """The secret fields among `names` that hold a value (the page says "unchanged")."""
    return {
        name
        for name in names
        if name in secret_keys()
        and getattr(getattr(config, name.split(".")[0]), name.split(".")[1])
    }


def parse(
    form: Mapping[str, str], names: Iterable[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Typed changes from a submitted form, and a problem per field that is not even a value.

    An unticked checkbox is absent from a form, so a bool is `name in form`. An empty
    secret keeps the stored one (it is never shown); `<name>.clear` removes it.
    """
    changes: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name in names:
        spec = describe(name)
        section, key = name.split(".")
        raw = form.get(name, "").strip()
        if spec.kind == "bool":
            value: Any = name in form
        elif spec.kind == "secret":
            if f"{name}.clear" in form:
                value = ""
            elif raw:
                value = form[name]  # passwords keep their spaces
            else:
                continue
        elif spec.kind in ("int", "float"):
            try:
                value = int(raw) if spec.kind == "int" else float(raw)
            except ValueError:
                errors[name] = "enter a whole number" if spec.kind == "int" else "enter a number"
                continue
        else:
            value = raw
        changes.setdefault(section, {})[key] = value
    return changes, errors


def save(controller: Controller, form: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """Validate and save the whole form at once; the problems by field name, {} when saved."""
    names = list(names)
    changes, errors = parse(form, names)
    try:
        if errors:  # not saved; the other fields are still checked, to show every problem
            apply_changes(controller.config, changes, "setup page")
        else:
            controller.update_settings(changes, "setup page")
    except ConfigError as err:
        errors.update(err.problems)
    return {name: errors[name] for name in [*names, *errors] if name in errors}
