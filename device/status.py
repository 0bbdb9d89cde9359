"""The live status board: what the device is doing now, shared by every part of it.

The analysis loop, the player worker and the MQTT client write to it; the setup page,
MQTT and sd_notify read it. Listeners hear only the keys that changed.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from device import __version__

logger = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]

INITIAL: dict[str, Any] = {
    "version": __version__,
    "started_at": 0.0,  # wall-clock seconds since the epoch
    "camera_state": "starting",  # starting | running | unavailable | lost | ended | off
    "camera_source": "",
    "camera_detail": "",
    "model": "",
    "faces": 0,
    "emotion": None,  # strongest emotion of the followed face this frame; None: no face
    "scores": {},  # emotion -> smoothed probability, 0..1
    "confidence": 0.0,  # smoothed probability of `emotion`, 0..1
    "present": False,
    "presence_detail": "",  # why nobody is seen although someone may be there, e.g. no frames
    "mood": None,  # the debounced mood the player follows
    "mood_reason": "",
    "mood_since": 0.0,
    "fps": 0.0,  # analysed frames per second
    "autoplay": True,
    "camera_enabled": True,
    "override": None,  # an emotion forced by the user, or None
    "player": "dry-run",
    "player_state": "idle",  # idle | playing | paused | waiting | error
    "player_detail": "",
    "now_playing": {},  # {"context_uri", "name", "device"}
    "spotify_state": "not linked",
    "spotify_account": "",  # the linked account's key on the broker (device.coordination)
    "coordination": "",  # sharing the account with other Mood Melodies, in words
    "coordination_info": {},  # the same for Home Assistant: role, driver, speaker, others
    "mqtt_state": "disabled",
    "warnings": [],
    "calibration": "shipped model",  # or "calibrated: N samples of K emotions, date", …
    "correct_to": "neutral",  # the emotion Home Assistant's "Correct mood" button teaches
}


class StatusBoard:
    """Thread-safe key/value status with change notification."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = copy.deepcopy(INITIAL)
        self._values["started_at"] = time.time()
        self._listeners: list[Listener] = []

    def update(self, **changes: Any) -> dict[str, Any]:
        """Set keys; listeners are called (outside the lock) with those that changed."""
        unknown = set(changes) - set(INITIAL)
        if unknown:
            raise KeyError(f"unknown status keys: {sorted(unknown)}")
        with self._lock:
            changed = {k: v for k, v in changes.items() if self._values.get(k) != v}
            self._values.update(changed)
            listeners = list(self._listeners)
        if changed:
            for listener in listeners:
                try:
                    listener(copy.deepcopy(changed))
                except Exception:
                    logger.exception("status listener failed")
        return changed

    def get(self, key: str) -> Any:
        with self._lock:
            return copy.deepcopy(self._values[key])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._values)

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)
