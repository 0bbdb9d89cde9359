"""The configuration: one TOML file, typed and validated here and nowhere else.

Every setting is a field of a frozen dataclass below, with its default, its unit and
what is allowed. `load_config` turns a file into a `Config` or raises `ConfigError`
naming the file, the key and what is allowed; `apply_changes` is the one path by which
the setup page and MQTT commands change settings; `save_config` writes the file
atomically (0600: it may hold the MQTT password).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from device import EMOTIONS
from device.atomic import write_atomic

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout (or install) root; relative model paths are resolved against it."""

SYSTEM_CONFIG = Path("/etc/moodmelody/config.toml")


class ConfigError(ValueError):
    """One or more configuration values are wrong; each line names the file and the key.

    `key` and `problem` are the first; `problems` holds every key's problem, in file order.
    """

    def __init__(
        self, source: str, key: str, problem: str, more: Mapping[str, str] | None = None
    ) -> None:
        self.problems = {key: problem, **(more or {})}
        super().__init__("\n".join(f"{source}: {k}: {p}" for k, p in self.problems.items()))
        self.source = source
        self.key = key
        self.problem = problem

    @classmethod
    def collected(cls, source: str, problems: Mapping[str, str]) -> ConfigError:
        """One error for several keys' problems (at least one)."""
        (key, problem), *rest = problems.items()
        return cls(source, key, problem, dict(rest))

    def lines(self) -> list[str]:
        """One `file: key: problem` line per problem."""
        return str(self).splitlines()


def setting(
    default: Any,
    doc: str,
    *,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    check: Callable[[Any], str | None] | None = None,
    secret: bool = False,
) -> Any:
    """A config field: `doc` says what it is and its unit; `check` returns a problem or None."""
    meta = {
        "doc": doc,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "check": check,
        "secret": secret,
    }
    return field(default=default, metadata=meta)


_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_CONTEXT_URI = re.compile(r"^spotify:(playlist|album|artist|show):[A-Za-z0-9]{10,40}$")


def _time_range(value: str) -> str | None:
    if value == "":
        return None
    start, sep, end = value.partition("-")
    if not (sep and _CLOCK.match(start.strip()) and _CLOCK.match(end.strip())):
        return "expected HH:MM-HH:MM (e.g. 22:00-07:00) or empty for none"
    return None


def _volume_schedule(value: str) -> str | None:
    """`HH:MM=percent` pairs separated by commas, e.g. `07:00=40, 19:00=25`."""
    if value == "":
        return None
    for item in value.split(","):
        clock, sep, percent = item.strip().partition("=")
        if not (sep and _CLOCK.match(clock) and percent.isdigit() and int(percent) <= 100):
            return "expected HH:MM=percent pairs separated by commas (e.g. 07:00=40, 19:00=25)"
    return None


def _context_uri(value: str) -> str | None:
    if value == "" or _CONTEXT_URI.match(value):
        return None
    return "expected a Spotify URI like spotify:playlist:<id> (album, artist, show too) or empty"


def _listen(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not (host and sep and port.isdigit() and 0 < int(port) < 65536):
        return "expected HOST:PORT (e.g. 0.0.0.0:8080)"
    return None


def _topic(value: str) -> str | None:
    if any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
        return "a topic without wildcards (#, +) and without leading or trailing /"
    return None


def _room_name(value: str) -> str | None:
    if len(value) > 40 or any(not c.isprintable() for c in value):
        return "at most 40 printable characters (e.g. Living Room)"
    return None


@dataclass(frozen=True)
class DeviceConfig:
    """[device]: which room this Mood Melody is in, and how it shares a Spotify account with
    the other Mood Melodies of the home (over the MQTT broker)."""

    name: str = setting(
        "", "the room it is in, e.g. Living Room; shown in Home Assistant", check=_room_name
    )
    priority: int = setting(
        0,
        "with people in several rooms on one Spotify account, a room of higher priority "
        "takes the music; equal: the room that has it keeps it",
        minimum=-100,
        maximum=100,
    )
    coordinate: bool = setting(
        True, "share the Spotify account with the other Mood Melodies on the broker"
    )
    peer_timeout_s: float = setting(
        60.0,
        "a Mood Melody not heard from for this long is gone; this one, cut off from the "
        "broker this long, plays on its own, seconds",
        minimum=3,
        maximum=3600,
    )


@dataclass(frozen=True)
class CameraConfig:
    """[camera]: where frames come from and how often they are analysed."""

    source: str = setting(
        "auto",
        "auto (picamera2, then /dev/video0) | picamera2 | /dev/videoN | a V4L2 index | "
        "a video file | a stream URL | a folder of images",
    )
    fps: float = setting(5.0, "analysis rate cap, frames per second", minimum=0.1, maximum=60)
    width: int = setting(
        1536, "capture width, pixels (1536×864 sees faces to about 4 m)", minimum=160, maximum=4096
    )
    height: int = setting(864, "capture height, pixels", minimum=120, maximum=4096)
    hfov_deg: float = setting(
        66.0,
        "the camera's horizontal field of view, degrees, for face distances: 66 Camera "
        "Module 3, 102 its wide lens, 62 Camera Module 2, about 60-78 a USB webcam",
        minimum=20,
        maximum=180,
    )
    enabled: bool = setting(True, "false stops analysing (privacy switch)")


@dataclass(frozen=True)
class ModelsConfig:
    """[models]: the two networks and how they run."""

    face_detector: str = setting(
        "models/face_detection_short_range.tflite",
        "BlazeFace short-range model file: faces near the camera, and following a face found",
    )
    face_scanner: str = setting(
        "models/face_detection_full_range_sparse.tflite",
        "BlazeFace full-range model file: scans the frame for faces across the room",
    )
    emotion: str = setting(
        "models/emotion_int8.tflite", "emotion model; its metadata JSON sits beside it"
    )
    threads: int = setting(1, "inference threads per model", minimum=1, maximum=4)
    min_face_score: float = setting(0.5, "face detection threshold, 0..1", minimum=0, maximum=1)
    face_margin: float = setting(
        0.15,
        "margin added around a detected face before cropping, fraction of its size",
        minimum=0,
        maximum=1,
    )


@dataclass(frozen=True)
class MoodConfig:
    """[mood]: how raw per-frame emotions become a calm, debounced mood."""

    time_constant_s: float = setting(
        2.0, "smoothing time constant of the class probabilities, seconds", minimum=0, maximum=60
    )
    threshold: float = setting(
        0.45, "smoothed probability a mood needs to be a candidate, 0..1", minimum=0, maximum=1
    )
    dwell_s: float = setting(
        8.0,
        "how long a new mood must hold before it is announced, seconds",
        minimum=0,
        maximum=600,
    )
    min_switch_interval_s: float = setting(
        120.0,
        "minimum time between two mood changes (playlist switches), seconds",
        minimum=0,
        maximum=86400,
    )
    absent_after_s: float = setting(
        60.0,
        "no face for this long means nobody is there (playback pauses), seconds",
        minimum=1,
        maximum=86400,
    )
    follow: str = setting(
        "largest",
        "with several faces: follow the largest, or the room's average",
        choices=("largest", "room"),
    )


@dataclass(frozen=True)
class PlayerConfig:
    """[player]: what a mood change does."""

    kind: str = setting(
        "dry-run",
        "dry-run logs what it would play; spotify plays it",
        choices=("dry-run", "spotify"),
    )
    autoplay: bool = setting(True, "false: watch and report, but leave playback alone")
    shuffle: bool = setting(True, "start playlists shuffled")
    take_over: bool = setting(
        False, "true: switch even when someone else started something on the account"
    )
    quiet_hours: str = setting(
        "", "no automatic playback in this local time range, HH:MM-HH:MM", check=_time_range
    )
    volume_schedule: str = setting(
        "",
        "volume per time of day, HH:MM=percent pairs, e.g. 07:00=40, 19:00=25",
        check=_volume_schedule,
    )


@dataclass(frozen=True)
class SpotifyConfig:
    """[spotify]: the account link and the speaker."""

    client_id: str = setting("", "the client id of your own Spotify app (not a secret)")
    device_name: str = setting("", "the Spotify Connect speaker to play on, by name")
    device_id: str = setting("", "its last known id (ids can change; the name wins)")
    redirect_uri: str = setting(
        "", "registered redirect URI; empty: https://<this device>:8443/callback"
    )
    callback_listen: str = setting(
        "0.0.0.0:8443", "address of the HTTPS login callback the device serves", check=_listen
    )
    api_url: str = setting("https://api.spotify.com/v1/", "Web API base URL (tests override)")
    accounts_url: str = setting(
        "https://accounts.spotify.com", "accounts service base URL (tests override)"
    )


def _playlist(emotion: str) -> Any:
    return setting("", f"context URI to play for {emotion}", check=_context_uri)


@dataclass(frozen=True)
class PlaylistsConfig:
    """[playlists]: one Spotify context URI per emotion; empty keeps what plays."""

    angry: str = _playlist("angry")
    disgust: str = _playlist("disgust")
    fear: str = _playlist("fear")
    happy: str = _playlist("happy")
    sad: str = _playlist("sad")
    surprise: str = _playlist("surprise")
    neutral: str = _playlist("neutral")

    def for_mood(self, mood: str) -> str:
        return str(getattr(self, mood))


@dataclass(frozen=True)
class MqttConfig:
    """[mqtt]: Home Assistant over MQTT."""

    enabled: bool = setting(False, "connect to the broker")
    host: str = setting("localhost", "broker host name or address")
    port: int = setting(1883, "broker port (8883 is usual with TLS)", minimum=1, maximum=65535)
    username: str = setting("", "broker user name; empty for none")
    password: str = setting("", "broker password", secret=True)
    tls: bool = setting(False, "use TLS")
    ca_file: str = setting("", "CA certificate file for TLS; empty: the system CAs")
    client_id: str = setting("", "MQTT client id; empty: moodmelody-<device id>")
    base_topic: str = setting(
        "", "state/command topic root; empty: moodmelody/<device id>", check=_topic
    )
    discovery_prefix: str = setting(
        "homeassistant", "Home Assistant discovery prefix", check=_topic
    )
    device_discovery: bool = setting(
        True, "one device-based discovery message (HA 2024.11+); false: one per entity"
    )


@dataclass(frozen=True)
class WebConfig:
    """[web]: the setup page."""

    enabled: bool = setting(True, "serve the setup page")
    listen: str = setting("0.0.0.0:8080", "address and port of the setup page", check=_listen)
    preview: bool = setting(False, "allow a camera snapshot for a logged-in user (never stored)")


@dataclass(frozen=True)
class PathsConfig:
    """[paths]: where the device keeps its state."""

    state_dir: str = setting(
        "",
        "tokens, calibration, mood history; empty: $STATE_DIRECTORY (systemd) "
        "or ~/.local/state/moodmelody",
    )


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    mood: MoodConfig = field(default_factory=MoodConfig)
    player: PlayerConfig = field(default_factory=PlayerConfig)
    spotify: SpotifyConfig = field(default_factory=SpotifyConfig)
    playlists: PlaylistsConfig = field(default_factory=PlaylistsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    web: WebConfig = field(default_factory=WebConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def state_dir(self) -> Path:
        if self.paths.state_dir:
            return Path(self.paths.state_dir).expanduser()
        systemd_dir = os.environ.get("STATE_DIRECTORY")  # set by the unit's StateDirectory=
        if systemd_dir:
            return Path(systemd_dir.split(":")[0])
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state"
        return Path(base) / "moodmelody"

    def model_path(self, name: str) -> Path:
        """A [models] path, resolved against the project root when relative."""
        path = Path(getattr(self.models, name)).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path


assert tuple(f.name for f in dataclasses.fields(PlaylistsConfig)) == EMOTIONS


def sections() -> dict[str, type]:
    """Section name -> its dataclass, in file order."""
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def default_config_path() -> Path:
    """The service's file under systemd's ConfigurationDirectory=, else the user's own."""
    systemd_dir = os.environ.get("CONFIGURATION_DIRECTORY")
    if systemd_dir:
        return Path(systemd_dir.split(":")[0]) / "config.toml"
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "moodmelody/config.toml"


def _describe(meta: Mapping[str, Any], kind: type) -> str:
    if meta["choices"]:
        return "allowed: " + ", ".join(meta["choices"])
    lo, hi = meta["minimum"], meta["maximum"]
    name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
    if lo is not None and hi is not None:
        return f"allowed: {name} from {lo:g} to {hi:g}"
    return f"allowed: {name}"


def _validate_value(source: str, key: str, value: Any, meta: Mapping[str, Any], kind: type) -> Any:
    allowed = _describe(meta, kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(source, key, f"{value!r} is not valid ({allowed})")
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(source, key, f"{value!r} is not valid ({allowed})")
    lo, hi = meta["minimum"], meta["maximum"]
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(source, key, f"{value!r} is out of range ({allowed})")
    if meta["check"] and (problem := meta["check"](value)):
        raise ConfigError(source, key, f"{value!r}: {problem}")
    return value


def config_from_mapping(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a parsed TOML document; unknown sections and keys are errors too.

    Every problem is collected before raising, so a form or a file shows them all at once.
    """
    known = sections()
    problems: dict[str, str] = {}
    for name in data:
        if name not in known:
            problems[name] = f"unknown section (allowed: {', '.join(known)})"
    parts = {}
    for name, cls in known.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            problems[name] = "must be a [section] table"
            continue
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in table.items():
            if key not in fields:
                problems[f"{name}.{key}"] = f"unknown key (allowed: {', '.join(fields)})"
                continue
            try:
                values[key] = _validate_value(
                    source, f"{name}.{key}", value, fields[key].metadata, hints[key]
                )
            except ConfigError as err:
                problems[err.key] = err.problem
        parts[name] = cls(**values)
    if problems:
        raise ConfigError.collected(source, problems)
    return Config(**parts)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate `path`; a missing file gives the defaults."""
    if path is None:
        return Config()
    file = Path(path)
    if not file.exists():
        return Config()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(file), "(syntax)", str(err)) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(file), "(file)", str(err)) from err
    return config_from_mapping(data, str(file))


def to_mapping(config: Config) -> dict[str, dict[str, Any]]:
    return {name: dataclasses.asdict(getattr(config, name)) for name in sections()}


def apply_changes(
    config: Config, changes: Mapping[str, Mapping[str, Any]], source: str = "<change>"
) -> Config:
    """A new Config with `changes` ({section: {key: value}}) applied, validated as a whole.

    Raises ConfigError and changes nothing when any value is wrong.
    """
    merged = to_mapping(config)
    for name, table in changes.items():
        if not isinstance(table, Mapping):
            raise ConfigError(source, name, "must be a table of key = value")
        merged.setdefault(name, {}).update(table)
    return config_from_mapping(merged, source)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def dump_config(config: Config) -> str:
    """The whole config as TOML, each key preceded by its documentation."""
    lines = [
        "# Mood Melody configuration: every key with its unit and what is allowed.",
        "# The setup page rewrites this file when it saves: values are kept, comments",
        "# are regenerated. `systemctl reload moodmelody` applies hand edits.",
        "",
    ]
    for name, cls in sections().items():
        lines.append(f"[{name}]")
        section = getattr(config, name)
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            allowed = (
                ""
                if kind is str and not f.metadata["choices"]
                else (f" ({_describe(f.metadata, kind)})")
            )
            lines.append(f"# {f.metadata['doc']}{allowed}")
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        lines.append("")
    return "\n".join(lines)


def save_config(config: Config, path: str | os.PathLike[str]) -> None:
    write_atomic(path, dump_config(config), mode=0o600)


def secret_keys() -> set[str]:
    """`section.key` of every setting that must never be shown or logged."""
    return {
        f"{name}.{f.name}"
        for name, cls in sections().items()
        for f in dataclasses.fields(cls)
        if f.metadata["secret"]
    }
