"""The one narrow interface through which the setup page and MQTT steer the daemon.

Both read the live status here and change settings here; a change is validated as a
whole, saved atomically, then handed to the parts that apply it live (listeners).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from device import EMOTIONS
from device.config import Config, apply_changes, load_config, save_config
from device.status import StatusBoard

logger = logging.getLogger(__name__)

ConfigListener = Callable[[Config, Config], None]  # (old, new)


class CalibrationUnavailable(ValueError):
    """No emotion model is loaded, or the teach session is not where the command needs it."""


Overlay = Mapping[str, Mapping[str, Any]]  # {section: {key: value}}


class Controller:
    """`config` is what runs: the file's settings with the run-time `overlay` (`run --source`)
    on top, applied after every load and reload and never saved."""

    def __init__(
        self, config: Config, config_path: Path, status: StatusBoard, overlay: Overlay | None = None
    ) -> None:
        self.status = status
        self.config_path = config_path
        self.overlay: Overlay = overlay or {}
        self._saved = config  # what the file says
        self._config = self._overlaid(config)
        self._lock = threading.RLock()
        self._listeners: list[ConfigListener] = []
        self._actions: dict[str, Callable[..., Any]] = {}
        status.update(autoplay=config.player.autoplay, camera_enabled=config.camera.enabled)

    @property
    def config(self) -> Config:
        return self._config

    def _overlaid(self, saved: Config) -> Config:
        return apply_changes(saved, self.overlay, "--source and other run options")

    def on_config_change(self, listener: ConfigListener) -> None:
        self._listeners.append(listener)

    def on_action(self, name: str, action: Callable[..., Any]) -> None:
        """Register what `next_track`, `pause`, `play`, `override` and `calibration.*` do (wired by
        the daemon)."""
        self._actions[name] = action

    def update_settings(self, changes: Mapping[str, Mapping[str, Any]], source: str = "") -> Config:
        """Validate, save and apply `changes`; raises ConfigError and changes nothing if wrong."""
        with self._lock:
            saved = apply_changes(self._saved, changes, source or str(self.config_path))
            if saved == self._saved:
                return self._config
            save_config(saved, self.config_path)  # the file's settings, never the overlay
            self._saved = saved
            new = self._overlaid(saved)
            if new != self._config:
                self._install(self._config, new)
            return new

    def reload(self) -> Config:
        """Re-read the file (SIGHUP); on error the running config stays and the error is raised."""
        with self._lock:
            saved = load_config(self.config_path)
            new = self._overlaid(saved)
            self._saved = saved
            self._install(self._config, new)
            return new

    def _install(self, old: Config, new: Config) -> None:
        self._config = new
        self.status.update(autoplay=new.player.autoplay, camera_enabled=new.camera.enabled)
        for listener in self._listeners:
            try:
                listener(old, new)
            except Exception:
                logger.exception("applying the new settings failed in %r", listener)

    def spotify_linked(self, spotify_state: str) -> bool:
        """What linking a Spotify account does, whichever way it was linked (the page's paste
        flow, the HTTPS callback): the status shows the link, and a dry-run player becomes
        the Spotify one. True when the player was switched."""
        self.status.update(spotify_state=spotify_state)
        if self.config.player.kind != "dry-run":
            return False
        self.update_settings({"player": {"kind": "spotify"}}, "Spotify login")
        logger.info("Spotify linked: the player now plays on Spotify")
        return True

    # Commands: the same settings path as the page, so both stay in step.
    def set_autoplay(self, on: bool, source: str = "command") -> None:
        self.update_settings({"player": {"autoplay": bool(on)}}, source)

    def set_camera(self, on: bool, source: str = "command") -> None:
        self.update_settings({"camera": {"enabled": bool(on)}}, source)

    def set_override(self, mood: str | None) -> None:
        """Play `mood` now regardless of the camera; None returns to following faces."""
        if mood is not None and mood not in EMOTIONS:
            raise ValueError(f"unknown mood {mood!r} (allowed: {', '.join(EMOTIONS)} or none)")
        self.status.update(override=mood)
        self._run_action("override")

    def next_track(self) -> None:
        self._run_action("next_track")

    def pause(self) -> None:
        self._run_action("pause")

    def play(self) -> None:
        self._run_action("play")

    def _run_action(self, name: str) -> None:
        action = self._actions.get(name)
        if action is None:
            logger.warning("%s: not available (the daemon has not wired it)", name)
            return
        action()

    # Personal calibration (device.teach.CalibrationService, wired once a model is loaded).
    def correct_mood(self, right: str, wrong: str | None = None) -> int:
        """ "That was not `wrong` (default: the current mood), it was `right`": how many recent
        frames were relabelled. ValueError when there is nothing to correct."""
        wrong = wrong or self.status.get("mood") or self.status.get("emotion")
        if right not in EMOTIONS or wrong not in EMOTIONS:
            raise ValueError(f"expected two of {', '.join(EMOTIONS)}, got {wrong!r} -> {right!r}")
        if wrong == right:
            raise ValueError(f"the mood already is {right}")
        return self._calibration("correct", wrong, right)  # type: ignore[no-any-return]

    def choose_correction(self, right: str) -> None:
        """The emotion Home Assistant's "Correct mood" button will teach."""
        if right not in EMOTIONS:
            raise ValueError(f"unknown emotion {right!r}")
        self.status.update(correct_to=right)

    def teach_start(self) -> dict[str, Any]:
        return self._calibration("teach_start")  # type: ignore[no-any-return]

    def teach_state(self) -> dict[str, Any]:
        return self._calibration("teach_state")  # type: ignore[no-any-return]

    def teach_finish(self) -> dict[str, Any]:
        return self._calibration("teach_finish")  # type: ignore[no-any-return]

    def teach_save(self) -> int:
        return self._calibration("teach_save")  # type: ignore[no-any-return]

    def teach_discard(self) -> None:
        self._calibration("teach_discard")

    def calibration_reset(self) -> None:
        self._calibration("reset")

    def _calibration(self, name: str, *args: Any) -> Any:
        action = self._actions.get(f"calibration.{name}")
        if action is None:
            raise CalibrationUnavailable("calibration needs the emotion model, which is not loaded")
        return action(*args)
