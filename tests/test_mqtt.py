"""The MQTT bridge against a real mosquitto broker, with a paho client in Home Assistant's seat."""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device import mqtt as bridge_module
from device.config import Config, MqttConfig, apply_changes, load_config, save_config
from device.controller import Controller
from device.coordination import account_topic
from device.coordinator import Coordinator
from device.homeassistant import ENTITIES, Layout
from device.mqtt import MqttBridge
from device.status import StatusBoard
from tests.conftest import REPO, Broker, free_port
from tests.waiting import wait_until

DEVICE_ID = "0a1b2c3d"
SETUP_URL = "http://moodmelody.local:8080/"
TIMEOUT = 15.0


class Listener:
    """A paho client in Home Assistant's place: subscribes, records, publishes."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._acked = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._acked.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if topics:
            self.subscribe(*topics)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def subscribe(self, *topics: str) -> None:
        self._acked.clear()
        wait_until(self.client.is_connected, "the listener to connect")
        self.client.subscribe([(topic, 1) for topic in topics])
        assert self._acked.wait(TIMEOUT), "no SUBACK"

    def on(self, topic: str, since: int = 0) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages[since:] if m.topic == topic]

    def mark(self) -> int:
        with self._lock:
            return len(self.messages)

    def wait_for(
        self, topic: str, payload: str | Callable[[str], bool] | None = None, since: int = 0
    ) -> mqtt.MQTTMessage:
        def match(msg: mqtt.MQTTMessage) -> bool:
            text = msg.payload.decode()
            return payload is None or (payload(text) if callable(payload) else text == payload)

        return wait_until(
            lambda: next((m for m in reversed(self.on(topic, since)) if match(m)), None),
            f"{payload!r} on {topic}",
        )

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, *topics: str) -> dict[str, bytes]:
    """What a newly subscribing client gets as retained on `topics` (a marker ends the wait)."""
    marker = f"test/marker/{uuid.uuid4().hex}"
    listener = Listener(port)
    try:
        listener.publish(marker, "end", retain=True)
        listener.subscribe(*topics, marker)
        listener.wait_for(marker)
        return {m.topic: m.payload for m in listener.messages if m.topic != marker and m.retain}
    finally:
        listener.close()


class Rig:
    """A real Controller, StatusBoard and config file, and the bridge under test."""

    def __init__(self, tmp_path: Path, port: int, account: str = "", **mqtt_settings: Any) -> None:
        """`account`: a linked Spotify account's key, so the bridge also coordinates."""
        self.config_path = tmp_path / "config.toml"
        config = apply_changes(
            Config(),
            {"mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, **mqtt_settings}},
        )
        self.status = StatusBoard()
        self.status.update(spotify_account=account)
        self.controller = Controller(config, self.config_path, self.status)
        self.coordinator = Coordinator(DEVICE_ID, lambda: self.controller.config, self.status)
        self.bridge = MqttBridge(
            self.controller,
            DEVICE_ID,
            SETUP_URL,
            throttle_s=0.5,
            coordinator=self.coordinator if account else None,
        )
        self.layout = Layout.from_config(config.mqtt, DEVICE_ID)
        self.announcement = account_topic(account, DEVICE_ID)

    def start(self) -> Rig:
        self.bridge.start()
        wait_until(lambda: self.status.get("mqtt_state") == "connected", "connected")
        return self

    def stop(self) -> None:
        self.bridge.stop()


@pytest.fixture
def make_rig(tmp_path: Path, mosquitto: Broker) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(account: str = "", **mqtt_settings: Any) -> Rig:
        rigs.append(Rig(tmp_path, mosquitto.port, account, **mqtt_settings))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.stop()


@pytest.fixture
def listener(mosquitto: Broker) -> Iterator[Listener]:
    client = Listener(mosquitto.port)
    yield client
    client.close()


def test_discovery_availability_and_states_are_retained(
    mosquitto: Broker, make_rig: Callable[..., Rig]
) -> None:
    """A Home Assistant that starts after the device still finds it: discovery, `online`
    and every state wait on the broker."""
    rig = make_rig().start()
    layout = rig.layout
    wait_until(lambda: retained(mosquitto.port, layout.availability), "online")
    found = retained(
        mosquitto.port, layout.discovery_topic(), layout.availability, f"{layout.base}/#"
    )
    discovery = json.loads(found[layout.discovery_topic()])
    assert set(discovery["cmps"]) == {e.key for e in ENTITIES}
    assert discovery["dev"]["cu"] == SETUP_URL
    assert found[layout.availability] == b"online"
    assert found[layout.state("emotion")] == b"none"
    assert found[layout.state("autoplay")] == b"ON"
    assert found[layout.state("override")] == b"follow faces"
    assert layout.state("mood_change") not in found  # events are never retained


@pytest.mark.parametrize("web", [True, False])
def test_the_setup_link_is_advertised_only_when_the_page_is_served(
    mosquitto: Broker, tmp_path: Path, web: bool
) -> None:
    """With `[web] enabled = false` Home Assistant offered a "Visit" link to a page that
    is not there."""
    from device.daemon import Daemon
    from device.identity import device_id

    listen = {"listen": f"127.0.0.1:{free_port()}"} if web else {}
    config = apply_changes(
        Config(),
        {
            "mqtt": {"enabled": True, "host": "127.0.0.1", "port": mosquitto.port},
            "web": {"enabled": web, **listen},
            "spotify": {"callback_listen": f"127.0.0.1:{free_port()}"},
            "paths": {"state_dir": str(tmp_path / "state")},
        },
    )
    daemon = Daemon(Controller(config, tmp_path / "config.toml", StatusBoard()))
    daemon.start_services()
    try:
        layout = Layout.from_config(config.mqtt, device_id())
        wait_until(lambda: retained(mosquitto.port, layout.discovery_topic()), "discovery")
        found = retained(mosquitto.port, layout.discovery_topic())
        device = json.loads(found[layout.discovery_topic()])["dev"]
        assert ("cu" in device) is web, device
    finally:
        for stop in daemon._stoppers:
            stop()


def test_per_entity_discovery_when_device_discovery_is_off(
    mosquitto: Broker, make_rig: Callable[..., Rig]
) -> None:
    """For Home Assistant before 2024.11: one retained config per entity."""
    rig = make_rig(device_discovery=False).start()
    topics = [rig.layout.discovery_topic(e) for e in ENTITIES]
    found = wait_until(
        lambda: (r := retained(mosquitto.port, *topics)) and len(r) == len(ENTITIES) and r,
        f"{len(ENTITIES)} discovery messages",
    )
    assert json.loads(found[topics[0]])["uniq_id"] == f"moodmelody_{DEVICE_ID}_emotion"


def test_states_are_published_on_change_only(
    make_rig: Callable[..., Rig], listener: Listener
) -> None:
    """A change goes out at once; a change of another key does not repeat it."""
    rig = make_rig().start()
    layout = rig.layout
    listener.subscribe(f"{layout.base}/#")
    listener.wait_for(layout.state("emotion"), "none")
    mark = listener.mark()
    rig.status.update(
        emotion="happy", confidence=0.8, present=True, mood="happy", mood_reason="happy for 8 s"
    )
    listener.wait_for(layout.state("emotion"), "happy", since=mark)
    listener.wait_for(layout.state("presence"), "ON", since=mark)
    listener.wait_for(layout.state("mood"), "happy", since=mark)
    event = json.loads(listener.wait_for(layout.state("mood_change"), since=mark).payload)
    assert event["event_type"] == "happy" and event["reason"] == "happy for 8 s"
    rig.status.update(spotify_state="linked")
    listener.wait_for(layout.state("spotify_state"), "linked", since=mark)
    assert len(listener.on(layout.state("emotion"), since=mark)) == 1
    assert len(listener.on(layout.state("mood_change"), since=mark)) == 1


def test_confidence_is_rate_limited_and_its_last_value_arrives(
    make_rig: Callable[..., Rig], listener: Listener
) -> None:
    """50 confidence changes in about 0.25 s make one message per 0.5 s throttle interval
    (plus the first), and the newest value is not lost behind the throttle."""
    rig = make_rig().start()
    topic = rig.layout.state("confidence")
    listener.subscribe(topic)
    listener.wait_for(topic)
    mark = listener.mark()
    rig.status.update(emotion="sad")
    started = time.monotonic()
    for percent in range(30, 80):
        rig.status.update(confidence=percent / 100)
        time.sleep(0.005)
    intervals = math.ceil((time.monotonic() - started) / 0.5)  # more on a loaded machine
    listener.wait_for(topic, "79", since=mark)
    time.sleep(0.6)  # one more throttle interval: nothing else may follow
    assert 1 <= len(listener.on(topic, since=mark)) <= min(2 + intervals, 10)


def test_commands_round_trip_through_the_controller(
    make_rig: Callable[..., Rig], listener: Listener
) -> None:
    """Switch, select and button commands reach the same Controller path as the setup page:
    the settings file changes and the new state comes back."""
    rig = make_rig().start()
    layout = rig.layout
    pressed = {name: threading.Event() for name in ("next_track", "pause", "play", "override")}
    for name, event in pressed.items():
        rig.controller.on_action(name, event.set)
    listener.subscribe(f"{layout.base}/+")

    listener.publish(layout.command("autoplay"), "OFF")
    listener.wait_for(layout.state("autoplay"), "OFF")
    assert load_config(rig.config_path).player.autoplay is False
    listener.publish(layout.command("camera"), "OFF")
    listener.wait_for(layout.state("camera"), "OFF")
    assert load_config(rig.config_path).camera.enabled is False

    listener.publish(layout.command("override"), "sad")
    listener.wait_for(layout.state("override"), "sad")
    assert pressed["override"].wait(TIMEOUT) and rig.status.get("override") == "sad"
    mark = listener.mark()
    listener.publish(layout.command("override"), "follow faces")
    listener.wait_for(layout.state("override"), "follow faces", since=mark)
    assert rig.status.get("override") is None
    listener.publish(layout.command("override"), "angry")
    listener.wait_for(layout.state("override"), "angry")
    mark = listener.mark()
    listener.publish(layout.command("override"), "none")  # what older automations send
    listener.wait_for(layout.state("override"), "follow faces", since=mark)
    assert rig.status.get("override") is None

    listener.publish(layout.command("next_track"), "PRESS")
    listener.publish(layout.command("pause"), "PRESS")
    listener.publish(layout.command("play"), "PRESS")
    assert all(pressed[name].wait(TIMEOUT) for name in ("next_track", "pause", "play"))


def test_bad_commands_are_logged_and_ignored(
    make_rig: Callable[..., Rig], listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing changes on a malformed or unknown command, each is logged, and the bridge
    carries on with the next good one."""
    caplog.set_level(logging.WARNING, logger="device.mqtt")
    rig = make_rig().start()
    layout = rig.layout
    listener.subscribe(layout.state("autoplay"))
    for topic, payload in [
        (layout.command("autoplay"), b"maybe"),
        (layout.command("override"), b"ecstatic"),
        (layout.command("emotion"), b"happy"),
        (layout.command("pause"), b"\xff" * 500),
    ]:
        listener.publish(topic, payload)
    listener.publish(layout.command("autoplay"), "OFF")
    listener.wait_for(layout.state("autoplay"), "OFF")
    ignored = [r.getMessage() for r in caplog.records if "ignoring command" in r.getMessage()]
    assert len(ignored) == 4
    assert "expected ON or OFF" in ignored[0] and "no such command" in ignored[2]
    assert rig.status.get("override") is None


def test_a_retained_command_is_not_replayed_on_connect(
    mosquitto: Broker, make_rig: Callable[..., Rig], listener: Listener
) -> None:
    """A command someone published retained would flip the setting on every reconnect."""
    rig = make_rig()
    listener.publish(rig.layout.command("camera"), "OFF", retain=True)
    rig.start()
    layout = rig.layout
    listener.subscribe(layout.state("camera"), layout.state("override"))
    listener.publish(layout.command("override"), "happy")  # handled after the retained one
    listener.wait_for(layout.state("override"), "happy")
    assert rig.controller.config.camera.enabled is True
    assert [m.payload for m in listener.on(layout.state("camera"))] == [b"ON"]


def test_fuzzed_commands_never_crash_the_bridge(
    make_rig: Callable[..., Rig], listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    """Random payloads on every command topic (and unknown ones): no error is logged, the
    bridge's thread lives, and a good command still works afterwards."""
    caplog.set_level(logging.WARNING)
    rig = make_rig().start()
    layout = rig.layout
    topics = [layout.command(e.key) for e in ENTITIES] + [f"{layout.base}/../set"]

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(topic=st.sampled_from(topics), payload=st.binary(max_size=200))
    def send(topic: str, payload: bytes) -> None:
        listener.client.publish(topic, payload, qos=0)

    send()
    listener.subscribe(layout.state("override"))
    listener.publish(layout.command("override"), "fear")
    listener.wait_for(layout.state("override"), "fear")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert rig.bridge._thread.is_alive()


def test_broker_restart_reconnects_and_publishes_everything_again(
    mosquitto: Broker, make_rig: Callable[..., Rig]
) -> None:
    """The broker forgets its retained messages (no persistence); after it comes back the
    bridge reconnects by itself and publishes discovery and the current state again,
    including what changed while it was away."""
    rig = make_rig().start()
    states: list[str] = []
    rig.status.subscribe(lambda changed: states.append(changed.get("mqtt_state", "")))
    mosquitto.stop()
    wait_until(lambda: rig.status.get("mqtt_state").startswith("disconnected"), "disconnected")
    rig.status.update(mood="sad", emotion="sad")
    mosquitto.start()
    wait_until(lambda: rig.status.get("mqtt_state") == "connected", "reconnected")
    layout = rig.layout
    found = wait_until(
        lambda: (
            (
                r := retained(
                    mosquitto.port,
                    layout.discovery_topic(),
                    layout.availability,
                    f"{layout.base}/+",
                )
            )
            and len(r) > 10
            and r
        ),
        "everything published again",
    )
    assert layout.discovery_topic() in found and found[layout.availability] == b"online"
    assert found[layout.state("mood")] == b"sad" and found[layout.state("emotion")] == b"sad"
    assert "disconnected: connection lost" in states


def test_home_assistant_birth_republishes_discovery_and_state(
    make_rig: Callable[..., Rig], listener: Listener
) -> None:
    """When HA restarts it says `online` on homeassistant/status; the device answers with its
    discovery and states (HA may have lost them, e.g. with retained messages off)."""
    rig = make_rig().start()
    layout = rig.layout
    listener.subscribe(layout.discovery_topic(), layout.state("emotion"))
    listener.wait_for(layout.discovery_topic())
    mark = listener.mark()
    listener.publish(layout.birth, "online")
    assert not listener.wait_for(layout.discovery_topic(), since=mark).retain
    listener.wait_for(layout.state("emotion"), "none", since=mark)


def test_disabling_mqtt_removes_the_device(
    mosquitto: Broker, make_rig: Callable[..., Rig], listener: Listener
) -> None:
    """Turning MQTT off clears the retained discovery (HA removes the device) and the
    retained states, then disconnects."""
    rig = make_rig().start()
    layout = rig.layout
    listener.subscribe(layout.discovery_topic())
    listener.wait_for(layout.discovery_topic())
    rig.controller.update_settings({"mqtt": {"enabled": False}}, "test")
    listener.wait_for(layout.discovery_topic(), "")
    wait_until(lambda: rig.status.get("mqtt_state") == "disabled", "disabled")
    assert (
        retained(mosquitto.port, layout.discovery_topic(), layout.availability, f"{layout.base}/#")
        == {}
    )


def test_the_room_names_the_device_and_a_rename_is_announced(
    mosquitto: Broker, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig()
    rig.controller.update_settings({"device": {"name": "Kitchen"}}, "test")
    rig.start()
    topic = rig.layout.discovery_topic()

    def device_name() -> str | None:
        found = retained(mosquitto.port, topic)
        return json.loads(found[topic])["dev"]["name"] if topic in found else None

    wait_until(lambda: device_name() == "Mood Melody Kitchen", "the kitchen's device")
    rig.controller.update_settings({"device": {"name": "Bedroom"}}, "test")
    wait_until(lambda: device_name() == "Mood Melody Bedroom", "the renamed device")


def test_a_coordinating_device_announces_itself_and_leaves_when_stopped(
    mosquitto: Broker, make_rig: Callable[..., Rig]
) -> None:
    """Its announcement on the account is retained while it runs, and cleared when it stops,
    so the others take the account over at once rather than after the peer timeout."""
    rig = make_rig(account="0123456789ab").start()
    rig.status.update(present=True)
    found = wait_until(
        lambda: (
            (r := retained(mosquitto.port, rig.announcement))
            and json.loads(r[rig.announcement])["wanted_for_s"] is not None
            and r
        ),
        "an announcement of someone there",
    )
    said = json.loads(found[rig.announcement])
    assert (said["device_id"], said["name"]) == (DEVICE_ID, f"Mood Melody {DEVICE_ID}")
    assert rig.status.get("coordination") == "alone: no other Mood Melody on this Spotify account"
    rig.stop()
    assert retained(mosquitto.port, rig.announcement) == {}


def test_disabling_mqtt_also_leaves_the_account(
    mosquitto: Broker, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(account="0123456789ab").start()
    wait_until(lambda: retained(mosquitto.port, rig.announcement), "the announcement")
    rig.controller.update_settings({"mqtt": {"enabled": False}}, "test")
    wait_until(lambda: rig.status.get("mqtt_state") == "disabled", "disabled")
    assert retained(mosquitto.port, rig.announcement) == {}
    assert rig.coordinator.decide().describe() == (
        "off: other rooms are found through the MQTT broker, which is not set up"
    )


def test_forget_clears_everything_the_device_left_on_the_broker(
    mosquitto: Broker, make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    """`moodmelody forget` (uninstall runs it): discovery in both styles, availability, every
    state and its announcement go; another device's messages stay."""
    other = make_rig(base_topic="mm/other")
    other.bridge = MqttBridge(other.controller, "99999999", "", throttle_s=0.5)
    other.start()
    rig = make_rig(account="0123456789ab").start()
    wait_until(lambda: retained(mosquitto.port, rig.announcement), "the announcement")
    rig.stop()
    before = retained(mosquitto.port, "moodmelody/#", "homeassistant/#", "mm/#")
    mine = [t for t in before if DEVICE_ID in t or t.startswith("moodmelody/")]
    assert len(mine) > 20
    ok, message = bridge_module.forget(rig.controller.config, DEVICE_ID, "0123456789ab")
    assert ok and message.startswith("cleared ")
    after = retained(mosquitto.port, "moodmelody/#", "homeassistant/#", "mm/#")
    assert set(after) == set(before) - set(mine)
    assert all(t.startswith(("mm/other/", "homeassistant/device/moodmelody_9999")) for t in after)


def test_new_topics_clear_the_old_ones(mosquitto: Broker, make_rig: Callable[..., Rig]) -> None:
    """A new discovery prefix clears the old discovery message; a new base topic clears the
    old retained states; the device is then found under the new ones."""
    rig = make_rig().start()
    old = rig.layout
    wait_until(lambda: retained(mosquitto.port, old.discovery_topic()), "old discovery")
    rig.controller.update_settings(
        {"mqtt": {"base_topic": "house/music", "discovery_prefix": "ha"}}, "test"
    )
    new = Layout.from_config(rig.controller.config.mqtt, DEVICE_ID)
    found = wait_until(
        lambda: retained(mosquitto.port, new.discovery_topic(), new.availability), "new discovery"
    )
    assert "house/music/emotion" in found[new.discovery_topic()].decode()
    assert found[new.availability] == b"online"
    assert retained(mosquitto.port, old.discovery_topic(), f"{old.base}/#") == {}


def test_stop_says_offline(mosquitto: Broker, make_rig: Callable[..., Rig]) -> None:
    rig = make_rig().start()
    rig.stop()
    assert retained(mosquitto.port, rig.layout.availability) == {
        rig.layout.availability: b"offline"
    }
    assert rig.status.get("mqtt_state") == "disconnected: stopped"


LAST_WILL_SCRIPT = """
import sys, time
from pathlib import Path
from device.config import Config, apply_changes
from device.controller import Controller
from device.mqtt import MqttBridge
from device.status import StatusBoard
config = apply_changes(Config(), {"mqtt": {"enabled": True, "host": "127.0.0.1",
                                           "port": int(sys.argv[1])}})
MqttBridge(Controller(config, Path(sys.argv[2]), StatusBoard()), sys.argv[3], "").start()
time.sleep(120)
"""


def test_kill_9_leaves_offline_through_the_last_will(
    mosquitto: Broker, tmp_path: Path, listener: Listener
) -> None:
    """A bridge that dies without a word (kill -9) still ends `offline`: the broker sends
    the last will, so HA shows the entities unavailable."""
    layout = Layout.from_config(MqttConfig(), "dead0001")
    listener.subscribe(layout.availability)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAST_WILL_SCRIPT,
            str(mosquitto.port),
            str(tmp_path / "config.toml"),
            "dead0001",
        ],
        cwd=REPO,
    )
    try:
        listener.wait_for(layout.availability, "online")
        mark = listener.mark()
        process.send_signal(signal.SIGKILL)
        process.wait(TIMEOUT)
        listener.wait_for(layout.availability, "offline", since=mark)
    finally:
        process.kill()
        process.wait(TIMEOUT)
    assert retained(mosquitto.port, layout.availability) == {layout.availability: b"offline"}


def test_status_updates_never_wait_for_the_broker(
    mosquitto: Broker, make_rig: Callable[..., Rig]
) -> None:
    """With the broker gone, the analysis loop's status updates still return at once."""
    rig = make_rig().start()
    mosquitto.stop()
    started = time.monotonic()
    for i in range(2000):
        rig.status.update(confidence=(i % 100) / 100, fps=float(i % 7), emotion="happy")
    assert time.monotonic() - started < 2.0
    mosquitto.start()


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto that wants user `ha` with password `secret`."""
    passwords = tmp_path / "passwords"
    subprocess.run(
        [
            shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
            "-c",
            "-b",
            str(passwords),
            "ha",
            "secret",
        ],
        check=True,
        timeout=TIMEOUT,
    )
    port = free_port()
    config = tmp_path / "secure.conf"
    config.write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {passwords}\npersistence false\n"
    )
    broker = Broker(
        port=port, config=config, binary=shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    )
    broker.start()
    yield broker
    broker.stop()


def test_a_refused_connection_is_never_reported_connected(
    tmp_path: Path, password_broker: Broker
) -> None:
    """Wrong credentials: the CONNACK's reason code says no, and the status says why."""
    rig = Rig(tmp_path, password_broker.port, username="ha", password="wrong")
    rig.bridge.start()
    try:
        wait_until(
            lambda: rig.status.get("mqtt_state") == "disconnected: Not authorized", "refused"
        )
        time.sleep(0.5)
        assert rig.status.get("mqtt_state") != "connected"
    finally:
        rig.stop()


def test_connection_test_tells_what_went_wrong(password_broker: Broker) -> None:
    """The setup page's button: success, bad password, nothing listening, missing CA file."""
    good = MqttConfig(
        enabled=True, host="127.0.0.1", port=password_broker.port, username="ha", password="secret"
    )
    assert bridge_module.test_connection(good) == (
        True,
        f"connected to 127.0.0.1:{password_broker.port}",
    )
    ok, message = bridge_module.test_connection(
        MqttConfig(
            host="127.0.0.1", port=password_broker.port, username="ha", password="hunter2-wrong"
        )
    )
    assert not ok and "Not authorized" in message and "hunter2" not in message
    ok, message = bridge_module.test_connection(
        MqttConfig(host="127.0.0.1", port=free_port()), timeout=2
    )
    assert not ok and message.startswith("cannot reach 127.0.0.1:")
    ok, message = bridge_module.test_connection(
        MqttConfig(host="127.0.0.1", tls=True, ca_file="/nonexistent/ca.pem")
    )
    assert not ok and message.startswith("TLS setup failed")


def test_the_forget_command_removes_the_device_named_by_its_state_folder(
    mosquitto: Broker, make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    """`moodmelody forget` as uninstall runs it: the device id comes from the state folder's
    `device_id` file (a cloned SD card's own id), the settings from the config file."""
    from device.identity import ID_FILE, device_id
    from tests.daemon_process import run_cli

    state = tmp_path / "state"
    state.mkdir()
    (state / ID_FILE).write_text(DEVICE_ID + "\n")
    assert device_id(state) == DEVICE_ID != device_id()
    rig = make_rig().start()
    wait_until(lambda: retained(mosquitto.port, rig.layout.discovery_topic()), "discovery")
    rig.stop()
    config = apply_changes(rig.controller.config, {"paths": {"state_dir": str(state)}}, "test")
    save_config(config, tmp_path / "forget.toml")
    result = run_cli("forget", "--config", str(tmp_path / "forget.toml"))
    assert result.stdout.startswith("cleared ") and f"127.0.0.1:{mosquitto.port}" in result.stdout
    assert retained(mosquitto.port, "homeassistant/#", f"{rig.layout.base}/#") == {}
    off = apply_changes(config, {"mqtt": {"enabled": False}})
    save_config(off, tmp_path / "off.toml")
    assert run_cli("forget", "--config", str(tmp_path / "off.toml")).stdout == (
        "MQTT is off: this device left nothing on a broker.\n"
    )


def test_check_reports_the_broker(mosquitto: Broker) -> None:
    assert bridge_module.check(Config()) == [("mqtt", True, "disabled")]
    config = apply_changes(
        Config(), {"mqtt": {"enabled": True, "host": "127.0.0.1", "port": mosquitto.port}}
    )
    assert bridge_module.check(config) == [
        ("mqtt broker", True, f"connected to 127.0.0.1:{mosquitto.port}")
    ]


@dataclass(frozen=True)
class TlsBroker:
    """A mosquitto with a TLS listener (certificate for 127.0.0.1, signed by `ca`) and a
    plain one for the test's own listener."""

    broker: Broker
    tls_port: int
    plain_port: int
    ca: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(
        [shutil.which("openssl") or "/usr/bin/openssl", *map(str, args)],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    ca_key, ca, key, request, cert = (
        tmp_path / name for name in ("ca.key", "ca.crt", "broker.key", "broker.csr", "broker.crt")
    )
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "2",
        "-subj",
        "/CN=Test household CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        request,
        "-subj",
        "/CN=127.0.0.1",
    )
    extensions = tmp_path / "broker.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        request,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        extensions,
    )
    tls_port, plain_port = free_port(), free_port()
    config = tmp_path / "tls.conf"
    config.write_text(
        f"user root\nper_listener_settings false\nallow_anonymous true\n"
        f"persistence false\nlistener {plain_port} 127.0.0.1\n"
        f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\n"
        f"keyfile {key}\n"
    )
    broker = Broker(
        port=tls_port, config=config, binary=shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    )
    broker.start()
    yield TlsBroker(broker, tls_port, plain_port, ca)
    broker.stop()


def test_the_bridge_talks_tls_to_a_broker_its_ca_file_vouches_for(
    tmp_path: Path, tls_broker: TlsBroker
) -> None:
    settings = {"tls": True, "ca_file": str(tls_broker.ca)}
    assert bridge_module.test_connection(
        MqttConfig(host="127.0.0.1", port=tls_broker.tls_port, **settings)
    ) == (True, f"connected to 127.0.0.1:{tls_broker.tls_port} with TLS")
    rig = Rig(tmp_path, tls_broker.tls_port, **settings).start()
    try:
        assert retained(tls_broker.plain_port, rig.layout.availability) == {
            rig.layout.availability: b"online"
        }
    finally:
        rig.stop()


# paho-mqtt leaves the socket of a failed TLS handshake to the garbage collector
# (Client._ssl_wrap_socket); what this test checks is that nothing connects and the status says why.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_untrusted_or_plain_connection_to_tls_is_refused_and_said_so(
    tmp_path: Path, tls_broker: TlsBroker
) -> None:
    """The system CAs do not know the household's CA: no connection, and the reason."""
    where = f"127.0.0.1:{tls_broker.tls_port}"
    untrusted = MqttConfig(host="127.0.0.1", port=tls_broker.tls_port, tls=True)
    assert bridge_module.test_connection(untrusted) == (
        False,
        (f"{where}: TLS certificate verify failed: self-signed certificate in certificate chain"),
    )
    assert bridge_module.test_connection(replace(untrusted, tls=False), timeout=1) == (
        False,
        f"{where} did not answer within 1 s (a TLS port answers only with TLS on)",
    )

    rig = Rig(tmp_path, tls_broker.tls_port, tls=True)
    rig.bridge.start()
    try:
        wait_until(
            lambda: (
                rig.status.get("mqtt_state")
                == (
                    f"disconnected: {where}: TLS certificate verify failed: "
                    "self-signed certificate in certificate chain"
                )
            ),
            "the reason in the status",
        )
        assert retained(tls_broker.plain_port, rig.layout.availability) == {}
    finally:
        rig.stop()
