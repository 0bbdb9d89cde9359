"""`moodmelody check`: one line per part of the set-up, each ok or not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from device.config import Config, ConfigError, load_config

CheckLine = tuple[str, bool, str]


def _check(name: str, probe: Callable[[], str]) -> CheckLine:
    try:
        return name, True, probe()
    except Exception as err:
        return name, False, f"{err.__class__.__name__}: {err}" if not str(err) else str(err)


def _camera(config: Config) -> str:
    from device.camera import open_source
    from device.placement import describe_range

    source = open_source(
        config.camera.source,
        config.camera.width,
        config.camera.height,
        config.camera.fps,
        realtime=False,
    )
    try:
        frame = source.read()
    finally:
        source.close()
    if frame is None:
        raise RuntimeError(f"{source.description}: no frame")
    height, width = frame.rgb.shape[:2]
    reach = describe_range(width, height, config.camera.hfov_deg)
    return f"{source.description}: {width}×{height} frame read; {reach}"


def missing_model(config: Config) -> str | None:
    """A model file the config names that is not there, said by its key; None if all are."""
    from device.classifier import metadata_path

    for key in ("face_detector", "emotion"):
        path = config.model_path(key)
        named = f'[models] {key} = "{getattr(config.models, key)}"'
        if not path.is_file():
            return f"{named}: no such file ({path})"
        if key == "emotion" and not metadata_path(path).is_file():
            return f"{named}: its metadata {metadata_path(path).name} is missing beside it"
    return None


def _models(config: Config) -> str:
    from device.pipeline import Analyser

    if problem := missing_model(config):
        raise FileNotFoundError(problem)
    analyser = Analyser.from_config(config)
    return f"face detector and emotion model loaded ({analyser.classifier.describe()})"


def _runtime() -> str:
    from device.runtime import runtime_name

    return f"TFLite runtime: {runtime_name()}"


def run_checks(config_path: Path, explicit: bool = False) -> list[CheckLine]:
    """Every check's line; `explicit`: the path was asked for, so it must exist."""
    if explicit and not config_path.exists():
        return [("config", False, f"{config_path}: no such file")]
    try:
        config = load_config(config_path)
    except ConfigError as err:
        return [("config", False, "; ".join(err.lines()))]
    where = str(config_path) if config_path.exists() else f"{config_path} not found: defaults"
    lines: list[CheckLine] = [("config", True, where)]
    lines.append(_check("runtime", _runtime))
    lines.append(_check("models", lambda: _models(config)))
    if config.camera.enabled:
        lines.append(_check("camera", lambda: _camera(config)))
    else:
        lines.append(("camera", True, "switched off in the settings"))
    if config.player.kind == "spotify" or config.spotify.client_id:
        from device.spotify import check as spotify_check

        lines.extend(spotify_check(config, config.state_dir()))
    if config.mqtt.enabled:
        from device.mqtt import check as mqtt_check

        lines.extend(mqtt_check(config))
    from device.teach import check as calibration_check

    lines.extend(calibration_check(config))
    return lines
