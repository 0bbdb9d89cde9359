"""The MQTT boundary: the device as a Home Assistant device, over paho-mqtt 2.x.

paho's network thread only receives; everything else (publishing states, running
commands through the Controller, reconnecting after a settings change) happens on the
bridge's own thread, so neither the analysis loop nor paho ever waits on the other.
What to publish and what a command means is decided in `device.homeassistant`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt

from device import identity
from device.config import Config, MqttConfig
from device.controller import Controller
from device.coordination import ROOT as COORDINATION_ROOT
from device.coordination import account_topic
from device.coordinator import STATUS_KEYS as COORDINATION_KEYS
from device.coordinator import Coordinator
from device.homeassistant import (
    OFFLINE,
    ONLINE,
    BadCommand,
    Layout,
    StateTopic,
    Throttle,
    discovery_messages,
    mood_event,
    parse_command,
    retained_topics,
    states_for,
)
from device.homeassistant import STATES as STATE_TOPICS

logger = logging.getLogger(__name__)

QOS = 1
KEEPALIVE_S = 30
RECONNECT_MAX_S = 60
SEND_TIMEOUT_S = 3.0  # how long a goodbye (offline, cleared discovery) may take to go out
COORDINATION_TICK_S = 1.0  # how often holds, silent peers and a lost broker are looked at


def _client_id(mqtt_config: MqttConfig, device_id: str) -> str:
    return mqtt_config.client_id or f"moodmelody-{device_id}"


def _new_client(mqtt_config: MqttConfig, client_id: str) -> mqtt.Client:
    """A client with the credentials and TLS of `mqtt_config`; raises OSError on bad TLS files."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if mqtt_config.username:
        client.username_pw_set(mqtt_config.username, mqtt_config.password or None)
    if mqtt_config.tls:
        client.tls_set(ca_certs=mqtt_config.ca_file or None)  # None: the system CAs
    return client


def _connect_failure(where: str, err: BaseException | None) -> str:
    """Why a connection to `where` failed, for the status and the log (TLS said as TLS)."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"{where}: TLS certificate verify failed: {err.verify_message}"
    if isinstance(err, ssl.SSLError):
        return f"{where}: TLS failed: {err.reason or err}"
    if isinstance(err, OSError) and err.strerror:
        return f"cannot reach {where}: {err.strerror}"
    return f"cannot reach {where}" + (f": {err}" if err else "")


def _wait_sent(infos: list[mqtt.MQTTMessageInfo]) -> None:
    deadline = time.monotonic() + SEND_TIMEOUT_S
    for info in infos:
        try:
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as err:
            logger.warning("MQTT: a message could not be sent: %s", err)


class MqttBridge:
    """Publishes the device to Home Assistant and passes its commands to the Controller."""

    def __init__(
        self,
        controller: Controller,
        device_id: str,
        setup_url: str,
        throttle_s: float = 5.0,
        coordinator: Coordinator | None = None,
    ) -> None:
        self._controller = controller
        self._status = controller.status
        self._device_id = device_id
        self._setup_url = setup_url
        self._mqtt = controller.config.mqtt  # the settings the connection runs with
        self._layout = Layout.from_config(self._mqtt, device_id)
        self._inbox: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._dirty: set[str] = set()  # status keys changed since the last publish
        self._wake_pending = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        # Owned by the bridge's thread:
        self._client: mqtt.Client | None = None
        self._online = threading.Event()  # connected, discovery and states published
        self._session_up = False  # the broker accepted the current connection (paho's thread)
        self._published: dict[str, str] = {}  # retained topic -> payload the broker has
        # confidence, scores and fps change with every frame: at most one update per throttle_s
        self._throttles = {s.suffix: Throttle(throttle_s) for s in STATE_TOPICS if s.throttled}
        self._held: set[StateTopic] = set()  # throttled topics with a change still to send
        self._last_mood: str | None = None
        self._coordinator = coordinator
        self._coordination: tuple[str, str] | None = None  # (subscription, own topic) in use
        self._coordinated_at = 0.0  # monotonic time of the last coordination turn
        self._commands: Mapping[str, Callable[[Any], None]] = {
            "autoplay": lambda on: controller.set_autoplay(on, source="mqtt"),
            "camera": lambda on: controller.set_camera(on, source="mqtt"),
            "override": controller.set_override,
            "next_track": lambda _: controller.next_track(),
            "pause": lambda _: controller.pause(),
            "play": lambda _: controller.play(),
            "correct_to": controller.choose_correction,
            "correct": lambda _: controller.correct_mood(controller.status.get("correct_to")),
        }

    def start(self) -> None:
        """Connect in the background (when enabled) and follow status and settings."""
        self._controller.on_config_change(self._on_config_change)
        self._status.subscribe(self._on_status)
        self._thread.start()
        self._post(self._connect)

    def stop(self, timeout: float = 5.0) -> None:
        """Say `offline`, disconnect and end the bridge's thread."""
        self._stopped = True
        if not self._thread.is_alive():
            return
        self._post(functools.partial(self._disconnect, "disconnected: stopped"))
        self._inbox.put(None)
        self._thread.join(timeout)

    # -- called on other threads: only hand work to the bridge's thread --------------------

    def _post(self, task: Callable[[], None]) -> None:
        self._inbox.put(task)

    def _on_status(self, changed: dict[str, Any]) -> None:
        if self._stopped:
            return
        if self._coordinator is not None and COORDINATION_KEYS & changed.keys():
            self._post(self._coordinate)
        with self._lock:
            self._dirty.update(changed)
            if self._wake_pending:
                return
            self._wake_pending = True
        self._post(self._publish_changes)

    def _on_config_change(self, old: Config, new: Config) -> None:
        if self._stopped:
            return
        if old.mqtt != new.mqtt:
            self._post(functools.partial(self._reconfigure, new.mqtt))
        elif old.device.name != new.device.name and self._client is not None:
            self._post(functools.partial(self._announce, self._client))

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: mqtt.ReasonCode,
        _properties: Any,
    ) -> None:
        if client is not self._client:
            return
        if reason.is_failure:
            logger.warning(
                "MQTT: %s:%s refused the connection: %s", self._mqtt.host, self._mqtt.port, reason
            )
            self._status.update(mqtt_state=f"disconnected: {reason}")
            return
        logger.info("MQTT: connected to %s:%s", self._mqtt.host, self._mqtt.port)
        self._session_up = True
        client.subscribe([(self._layout.commands, QOS), (self._layout.birth, QOS)])
        self._status.update(mqtt_state="connected")
        self._post(functools.partial(self._announce, client))
        if self._coordinator is not None:
            self._post(functools.partial(self._rejoin, client))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: mqtt.ReasonCode,
        _properties: Any,
    ) -> None:
        if client is not self._client or not self._session_up:
            return  # a refused connection: _on_connect has said why
        self._session_up = False
        self._online.clear()
        if self._coordinator is not None:
            self._post(self._coordinator.disconnected)
        why = "connection lost" if reason.is_failure else str(reason)
        logger.warning(
            "MQTT: disconnected from %s:%s (%s); reconnecting",
            self._mqtt.host,
            self._mqtt.port,
            why,
        )
        self._status.update(mqtt_state=f"disconnected: {why}")

    def _on_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        if client is not self._client:
            return
        # paho calls this from inside its `except OSError:`, so the error is at hand.
        why = _connect_failure(f"{self._mqtt.host}:{self._mqtt.port}", sys.exception())
        logger.warning("MQTT: %s; retrying", why)
        self._status.update(mqtt_state=f"disconnected: {why}")

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is not self._client:
            return
        if self._coordinator is not None and message.topic.startswith(COORDINATION_ROOT + "/"):
            self._post(functools.partial(self._heard, message.topic, message.payload))
            return
        if message.topic == self._layout.birth:
            if message.payload == ONLINE.encode():
                logger.info("MQTT: Home Assistant came online; publishing everything again")
                self._post(functools.partial(self._announce, client))
            return
        self._post(
            functools.partial(self._run_command, message.topic, message.payload, message.retain)
        )

    # -- the bridge's thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                task = self._inbox.get(timeout=self._next_due())
            except queue.Empty:
                task = self._on_timer
            if task is None:
                return
            try:
                task()
            except Exception:
                logger.exception("MQTT bridge: %r failed", task)

    def _next_due(self) -> float | None:
        """Seconds until a held (rate-limited) state may go out or coordination's next turn;
        None: nothing is due."""
        now = time.monotonic()
        waits = [self._throttles[state.suffix].wait_s(now) for state in self._held]
        if self._coordinator is not None:
            waits.append(max(0.0, self._coordinated_at + COORDINATION_TICK_S - now))
        return min(waits, default=None)

    def _on_timer(self) -> None:
        self._publish_changes()
        due = time.monotonic() - self._coordinated_at >= COORDINATION_TICK_S
        if self._coordinator is not None and due:
            self._coordinate()

    def _coordinate(self) -> None:
        """Decide again, follow the account's topics, and announce what changed."""
        assert self._coordinator is not None
        self._coordinated_at = time.monotonic()
        self._coordinator.decide()
        client = self._client
        wanted = self._coordinator.topics()
        if client is None or not self._session_up:
            return
        if wanted != self._coordination:
            self._leave_account(client)
            if wanted is not None:
                client.subscribe(wanted[0], QOS)
            self._coordination = wanted
        if wanted is not None and (payload := self._coordinator.outgoing()) is not None:
            client.publish(wanted[1], payload, QOS, retain=True)

    def _heard(self, topic: str, payload: bytes) -> None:
        assert self._coordinator is not None
        self._coordinator.heard(topic, payload)
        self._coordinate()

    def _rejoin(self, client: mqtt.Client) -> None:
        """After a (re)connect: the broker forgot our subscriptions, maybe our announcement."""
        assert self._coordinator is not None
        if client is self._client:
            self._coordinator.connected()
            self._coordination = None
            self._coordinate()

    def _leave_account(self, client: mqtt.Client) -> list[mqtt.MQTTMessageInfo]:
        """Stop following the account and clear this device's announcement from it."""
        if self._coordination is None:
            return []
        subscription, own = self._coordination
        self._coordination = None
        client.unsubscribe(subscription)
        return [client.publish(own, b"", QOS, retain=True)]

    def _connect(self) -> None:
        settings = self._mqtt
        if not settings.enabled:
            self._status.update(mqtt_state="disabled")
            return
        try:
            client = _new_client(settings, _client_id(settings, self._device_id))
        except OSError as err:
            logger.error("MQTT: TLS setup failed: %s", err)
            self._status.update(mqtt_state=f"disconnected: TLS setup failed: {err}")
            return
        client.will_set(self._layout.availability, OFFLINE, qos=QOS, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        self._client, self._session_up = client, False
        self._status.update(mqtt_state="connecting")
        client.connect_async(settings.host, settings.port, keepalive=KEEPALIVE_S)
        client.loop_start()

    def _disconnect(self, state: str, say_offline: bool = True) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self._online.is_set():
            goodbye = self._leave_account(client)  # the others take the account over at once
            if say_offline:
                goodbye.append(client.publish(self._layout.availability, OFFLINE, QOS, retain=True))
            _wait_sent(goodbye)
        self._online.clear()
        client.disconnect()
        client.loop_stop()
        self._status.update(mqtt_state=state)

    def _reconfigure(self, new: MqttConfig) -> None:
        """Apply new [mqtt] settings: clear what the old layout left behind, reconnect."""
        if new == self._mqtt:
            return
        new_layout = Layout.from_config(new, self._device_id)
        kept = set(retained_topics(new_layout)) if new.enabled else set()
        stale = [topic for topic in retained_topics(self._layout) if topic not in kept]
        if self._client is not None and stale:
            if self._online.is_set():
                logger.info("MQTT: clearing %d retained topics of the old settings", len(stale))
                _wait_sent([self._client.publish(topic, b"", QOS, retain=True) for topic in stale])
            else:
                logger.warning("MQTT: not connected; the old discovery messages stay on the broker")
        self._disconnect("disabled", say_offline=self._layout.availability not in stale)
        self._mqtt, self._layout = new, new_layout
        self._connect()

    def _announce(self, client: mqtt.Client) -> None:
        """Discovery, `online`, then every state: after a (re)connect or HA's birth message."""
        if client is not self._client or not client.is_connected():
            return
        self._published.clear()
        self._held.clear()
        room = self._controller.config.device.name
        for topic, payload in discovery_messages(self._layout, self._setup_url, room).items():
            self._send(topic, payload)
        self._send(self._layout.availability, ONLINE)
        snapshot = self._status.snapshot()
        now = time.monotonic()
        for state in STATE_TOPICS:
            self._send_state(state, snapshot, now, force=True)
        self._last_mood = snapshot["mood"]
        self._online.set()

    def _publish_changes(self) -> None:
        with self._lock:
            changed, self._dirty = self._dirty, set()
            self._wake_pending = False
        if not self._online.is_set():
            return  # everything is published again on the next connect
        snapshot = self._status.snapshot()
        now = time.monotonic()
        due = {s for s in self._held if self._throttles[s.suffix].wait_s(now) == 0}
        self._held -= due
        wanted = set(states_for(changed)) | due
        for state in STATE_TOPICS:
            if state in wanted:
                self._send_state(state, snapshot, now)
        if "mood" in changed:
            event = mood_event(snapshot, self._last_mood)
            if event is not None and self._client is not None:
                self._client.publish(self._layout.state("mood_change"), event, QOS, retain=False)
            self._last_mood = snapshot["mood"]

    def _send_state(
        self, state: StateTopic, snapshot: Mapping[str, Any], now: float, force: bool = False
    ) -> None:
        throttle = self._throttles.get(state.suffix)
        if throttle is not None and not force and throttle.wait_s(now) > 0:
            self._held.add(state)
            return
        if self._send(f"{self._layout.base}/{state.suffix}", state.render(snapshot)) and throttle:
            throttle.sent(now)

    def _send(self, topic: str, payload: str) -> bool:
        """Publish retained unless the broker already has this payload; True if sent."""
        if self._client is None or self._published.get(topic) == payload:
            return False
        info = self._client.publish(topic, payload, QOS, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self._published[topic] = payload
        return True

    def _run_command(self, topic: str, payload: bytes, retained: bool) -> None:
        shown = payload[:80]
        if retained:
            logger.warning(
                "MQTT: ignoring a retained command on %s (%r): commands must not be retained",
                topic,
                shown,
            )
            return
        try:
            command = parse_command(self._layout, topic, payload)
        except BadCommand as err:
            logger.warning("MQTT: ignoring command on %s (%r): %s", topic, shown, err)
            return
        logger.info("MQTT command: %s %s", command.key, command.value)
        try:
            self._commands[command.key](command.value)
        except (ValueError, OSError) as err:
            logger.warning("MQTT command %s failed: %s", command.key, err)


def _session(
    mqtt_config: MqttConfig, purpose: str, timeout: float
) -> tuple[mqtt.Client | None, str]:
    """A short connection of its own, for `purpose` (its client id differs from the bridge's,
    so it never kicks the live connection off): (the connected client, "") or (None, why)."""
    where = f"{mqtt_config.host}:{mqtt_config.port}"
    client_id = f"{_client_id(mqtt_config, identity.device_id())}-{purpose}"
    try:
        client = _new_client(mqtt_config, client_id)
    except OSError as err:
        return None, f"TLS setup failed: {err}"
    answers: list[mqtt.ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
    client.connect_timeout = timeout
    try:
        client.connect(mqtt_config.host, mqtt_config.port, keepalive=KEEPALIVE_S)
    except OSError as err:
        return None, _connect_failure(where, err)
    deadline = time.monotonic() + timeout
    while not answers and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    if answers and not answers[0].is_failure:
        return client, ""
    client.disconnect()
    if not answers:
        hint = "" if mqtt_config.tls else " (a TLS port answers only with TLS on)"
        return None, f"{where} did not answer within {timeout:g} s{hint}"
    return None, f"{where} refused the connection: {answers[0]}"


def test_connection(mqtt_config: MqttConfig, timeout: float = 5.0) -> tuple[bool, str]:
    """Connect once with these settings (the setup page's button): (ok, what happened)."""
    client, why = _session(mqtt_config, "test", timeout)
    if client is None:
        return False, why
    client.disconnect()
    where = f"{mqtt_config.host}:{mqtt_config.port}"
    return True, f"connected to {where}" + (" with TLS" if mqtt_config.tls else "")


def forget(config: Config, device_id: str, account: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Clear everything this device left retained on its broker (discovery in both styles,
    states, availability, its announcement on `account`): Home Assistant's device is gone.
    `moodmelody forget`, which uninstall runs once the service has stopped."""
    layouts = [
        Layout.from_config(dataclasses.replace(config.mqtt, device_discovery=style), device_id)
        for style in (True, False)
    ]
    topics = sorted({topic for layout in layouts for topic in retained_topics(layout)})
    if account:
        topics.append(account_topic(account, device_id))
    client, why = _session(config.mqtt, "forget", timeout)
    if client is None:
        return False, why
    sent = [client.publish(topic, b"", QOS, retain=True) for topic in topics]
    deadline = time.monotonic() + timeout
    while not all(info.is_published() for info in sent) and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.disconnect()
    where = f"{config.mqtt.host}:{config.mqtt.port}"
    if not all(info.is_published() for info in sent):
        return False, f"{where} did not confirm clearing within {timeout:g} s"
    return True, f"cleared {len(topics)} retained topics on {where}"


def check(config: Config) -> list[tuple[str, bool, str]]:
    """`moodmelody check`: can the device reach its broker?"""
    if not config.mqtt.enabled:
        return [("mqtt", True, "disabled")]
    ok, message = test_connection(config.mqtt)
    return [("mqtt broker", ok, message)]
