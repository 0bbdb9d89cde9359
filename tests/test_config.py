"""The config schema: defaults, validation messages that name file and key, atomic saves."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from device.config import (
    Config,
    ConfigError,
    apply_changes,
    dump_config,
    load_config,
    save_config,
    secret_keys,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == Config()


def test_values_are_read_and_ints_accepted_for_floats(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[camera]\nsource = "/dev/video2"\nfps = 10\n'
        '[playlists]\nhappy = "spotify:playlist:37i9dQZF1DXdPec7aLTmlC"\n',
    )
    config = load_config(path)
    assert config.camera.source == "/dev/video2"
    assert config.camera.fps == 10.0 and isinstance(config.camera.fps, float)
    assert config.playlists.for_mood("happy") == "spotify:playlist:37i9dQZF1DXdPec7aLTmlC"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("[camera]\nfps = 0\n", "camera.fps", "out of range"),
        ('[camera]\nfps = "fast"\n', "camera.fps", "allowed: a number"),
        ("[camera]\nhfov_deg = 10\n", "camera.hfov_deg", "out of range"),
        ('[camera]\nhfov_deg = "wide"\n', "camera.hfov_deg", "allowed: a number from 20 to 180"),
        ("[camera]\nwidth = 100\n", "camera.width", "out of range"),
        ("[models]\nface_scanner = 3\n", "models.face_scanner", "allowed: a string"),
        ('[player]\nkind = "sonos"\n', "player.kind", "allowed: dry-run, spotify"),
        ("[mqtt]\nport = true\n", "mqtt.port", "allowed: an integer"),
        ("[camera]\nframerate = 5\n", "camera.framerate", "unknown key"),
        ("[camra]\nfps = 5\n", "camra", "unknown section"),
        ('[playlists]\nhappy = "https://example.com"\n', "playlists.happy", "spotify:playlist"),
        ('[player]\nquiet_hours = "22-7"\n', "player.quiet_hours", "HH:MM-HH:MM"),
        ('[web]\nlisten = "8080"\n', "web.listen", "HOST:PORT"),
        ('[mqtt]\nbase_topic = "home/#"\n', "mqtt.base_topic", "wildcards"),
        ("[camera\n", "(syntax)", ""),
    ],
)
def test_a_bad_value_names_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, words: str
) -> None:
    """The one message a user sees must say where to look and what is allowed."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}:")
    assert words in message


def test_apply_changes_validates_the_whole_and_changes_nothing_on_error() -> None:
    config = Config()
    with pytest.raises(ConfigError, match=r"mqtt\.port"):
        apply_changes(config, {"mqtt": {"host": "broker", "port": 0}})
    assert config.mqtt.host == "localhost"
    changed = apply_changes(config, {"mqtt": {"host": "broker", "port": 1884}})
    assert (changed.mqtt.host, changed.mqtt.port) == ("broker", 1884)


def test_save_round_trips_and_is_private(tmp_path: Path) -> None:
    config = apply_changes(Config(), {"mqtt": {"password": 'p"a\\ss'}, "mood": {"dwell_s": 3}})
    path = tmp_path / "sub" / "config.toml"
    save_config(config, path)
    assert load_config(path) == config
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob("*.tmp"))


def test_dump_documents_every_key() -> None:
    text = dump_config(Config())
    assert (
        "# analysis rate cap, frames per second (allowed: a number from 0.1 to 60)\n"
        "fps = 5.0" in text
    )
    assert "mqtt.password" in secret_keys()


def test_the_example_config_documents_exactly_the_defaults() -> None:
    """config.example.toml is what install.sh puts in /etc; it must not drift from the schema."""
    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    assert example.read_text() == dump_config(Config()), (
        "regenerate: python -c 'from device.config import *; "
        'print(dump_config(Config()), end="")\' > config.example.toml'
    )


def test_every_bad_value_is_reported_at_once(tmp_path: Path) -> None:
    """Fixing one typo only to be told of the next, one restart at a time, is what users hate:
    every problem of the file comes in one error, one line each, in file order."""
    path = write(
        tmp_path,
        '[camera]\nfps = "fast"\nwidth = 10\n[mood]\nfollow = "loudest"\ncolour = 1\n[nosuch]\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert list(caught.value.problems) == [
        "nosuch",
        "camera.fps",
        "camera.width",
        "mood.follow",
        "mood.colour",
    ]
    lines = caught.value.lines()
    assert len(lines) == 5 and all(line.startswith(f"{path}: ") for line in lines)
    assert (caught.value.key, caught.value.problem) == (
        "nosuch",
        caught.value.problems["nosuch"],
    )
