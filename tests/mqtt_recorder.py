"""Home Assistant's seat on the broker for the end-to-end tests: every message under some
topics, in order, with the time it arrived; it subscribes again after a broker restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from tests.conftest import Broker


class Recorder:
    def __init__(self, broker: Broker, topic: str = "#") -> None:
        self.messages: list[tuple[float, str, str]] = []  # (monotonic time, topic, payload)
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="recorder")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda client, *_: client.subscribe(topic)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((time.monotonic(), message.topic, message.payload.decode()))

    def values(self, topic: str) -> list[str]:
        """The distinct successive values published on `topic`."""
        with self._lock:
            values = [payload for _, t, payload in self.messages if t == topic]
        return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]

    def latest(self, topic: str) -> str | None:
        with self._lock:
            return next((p for _, t, p in reversed(self.messages) if t == topic), None)

    def first(self, topic: str, accept: Callable[[str], bool], after: float) -> float | None:
        """When `topic` first carried a payload that `accept` accepts, after `after`."""
        with self._lock:
            found = (at for at, t, p in self.messages if t == topic and at > after and accept(p))
            return next(found, None)

    def topics(self, accept: Callable[[str], bool]) -> set[str]:
        with self._lock:
            return {t for _, t, _ in self.messages if accept(t)}

    def rate(self, start: float, end: float) -> float:
        """Messages per second that arrived from `start` to `end` (monotonic times)."""
        with self._lock:
            return sum(start <= at < end for at, _, _ in self.messages) / (end - start)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
