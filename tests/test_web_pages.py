"""The device's own pages: status, Home Assistant (MQTT), behaviour, camera preview."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from device.config import ConfigError
from tests.conftest import Broker, free_port
from tests.web_site import FAKE_JPEG, WebSite, build_site

MQTT_FORM = {
    "device.name": "Living Room",
    "device.priority": "0",
    "device.coordinate": "on",
    "mqtt.enabled": "on",
    "mqtt.host": "broker.lan",
    "mqtt.port": "1883",
    "mqtt.ca_file": "",
    "mqtt.username": "ha",
    "mqtt.password": "",
    "mqtt.base_topic": "",
    "mqtt.discovery_prefix": "homeassistant",
    "mqtt.device_discovery": "on",
}
BEHAVIOUR_FORM = {
    "player.autoplay": "on",
    "player.kind": "dry-run",
    "camera.enabled": "on",
    "mood.dwell_s": "12",
    "mood.min_switch_interval_s": "300",
    "mood.threshold": "0.5",
    "mood.absent_after_s": "90",
    "mood.follow": "largest",
    "player.quiet_hours": "22:00-07:00",
    "player.volume_schedule": "",
    "camera.fps": "4",
}


def saved_file(site: WebSite) -> dict:
    return tomllib.loads(site.controller.config_path.read_text())


def test_status_page_shows_the_live_status(site: WebSite) -> None:
    site.controller.status.update(
        emotion="happy",
        confidence=0.82,
        present=True,
        faces=1,
        scores={"happy": 0.82, "sad": 0.05},
        mood="happy",
        mood_reason="held 8 s",
        fps=4.96,
        mqtt_state="connected",
        now_playing={
            "context_uri": "spotify:playlist:x",
            "name": "Sunny Hits",
            "device": "Kitchen",
        },
    )
    page = site.text("/")
    for shown in (
        "82 %",
        "held 8 s",
        "5.0 fps",
        "Sunny Hits",
        "Kitchen",
        "connected",
        'value="0.82" data-score="happy"',
        '<svg viewBox="0 0 400 54"',
    ):
        assert shown in page, shown


def test_status_api_follows_changes(site: WebSite) -> None:
    """The page polls this; a stale snapshot would freeze the page."""
    assert site.client.get("/api/status").json["mood"] is None
    site.controller.status.update(mood="sad", scores={"sad": 0.7})
    answer = site.client.get("/api/status").json
    assert answer["mood"] == "sad" and answer["scores"] == {"sad": 0.7}
    assert answer["version"]


def test_timeline_shows_the_moods_seen(site: WebSite) -> None:
    site.controller.status.update(mood="happy")
    svg = site.client.get("/api/timeline?span=24h")
    assert svg.mimetype == "image/svg+xml"
    assert "<title>happy " in svg.get_data(as_text=True)
    assert (site.state_dir / "mood-history.json").exists()


def test_control_api_switches_autoplay_and_camera(site: WebSite) -> None:
    headers = {"X-CSRF-Token": site.csrf()}
    assert site.client.post("/api/control", json={"camera": False}, headers=headers).json == {
        "ok": True
    }
    assert site.controller.config.camera.enabled is False
    assert saved_file(site)["camera"]["enabled"] is False
    bad = site.client.post("/api/control", json={"camera": "off"}, headers=headers)
    assert bad.status_code == 400 and "unknown command" in bad.json["error"]


@pytest.mark.parametrize("button", ["next", "pause", "play"])
def test_control_api_buttons_reach_the_player_actions(site: WebSite, button: str) -> None:
    pressed = []
    for action in ("next_track", "pause", "play"):
        site.controller.on_action(action, lambda action=action: pressed.append(action))
    answer = site.client.post(
        "/api/control", json={"action": button}, headers={"X-CSRF-Token": site.csrf()}
    )
    assert answer.json == {"ok": True}
    assert pressed == [{"next": "next_track"}.get(button, button)]
    assert f'data-action="{button}"' in site.text("/")


def test_mqtt_settings_are_saved_and_applied(site: WebSite) -> None:
    heard = []
    site.controller.on_config_change(lambda old, new: heard.append(new.mqtt.host))
    answer = site.post("/mqtt", {**MQTT_FORM, "mqtt.password": "s3cret pw"})
    assert answer.status_code == 302
    assert heard == ["broker.lan"], "the running daemon hears the change (no restart)"
    mqtt = saved_file(site)["mqtt"]
    assert (mqtt["enabled"], mqtt["host"], mqtt["username"], mqtt["password"], mqtt["tls"]) == (
        True,
        "broker.lan",
        "ha",
        "s3cret pw",
        False,
    )


def test_the_room_is_saved_and_names_the_device_on_every_page(site: WebSite) -> None:
    answer = site.post("/mqtt", {**MQTT_FORM, "device.name": "Kitchen", "device.priority": "2"})
    assert answer.status_code == 302
    assert (site.controller.config.device.name, site.controller.config.device.priority) == (
        "Kitchen",
        2,
    )
    assert saved_file(site)["device"]["name"] == "Kitchen"
    page = site.text("/")
    assert '<span class="room">Kitchen</span>' in page and "· Mood Melody Kitchen</title>" in page
    answer = site.post("/mqtt", {**MQTT_FORM, "device.name": "x" * 41})
    assert answer.status_code == 400
    assert 'id="device.name-error" role="alert">' in answer.get_data(as_text=True)
    assert site.controller.config.device.name == "Kitchen"


def test_the_status_page_says_who_has_the_account(site: WebSite) -> None:
    site.controller.status.update(coordination="standing by: Kitchen has the account")
    assert "standing by: Kitchen has the account" in site.text("/")


def test_remove_from_home_assistant_turns_mqtt_off(site: WebSite) -> None:
    """Without a reachable broker it says that Home Assistant still lists the device."""
    site.post("/mqtt", MQTT_FORM)
    assert "Remove from Home Assistant</button>" in site.text("/mqtt")
    answer = site.post("/mqtt/forget", follow_redirects=True)
    page = answer.get_data(as_text=True)
    assert site.controller.config.mqtt.enabled is False
    assert "The broker could not be reached" in page
    assert "Remove from Home Assistant</button>" not in page


def test_bad_mqtt_port_is_shown_beside_it_and_nothing_is_saved(site: WebSite) -> None:
    """Saving the host while refusing the port would leave a half-changed broker setting."""
    answer = site.post("/mqtt", {**MQTT_FORM, "mqtt.port": "70000"})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert '<p class="error" id="mqtt.port-error" role="alert">70000 is out of range' in page
    assert 'value="broker.lan"' in page, "what was typed is kept in the form"
    assert site.controller.config.mqtt.host == "localhost"
    assert saved_file(site)["mqtt"]["host"] == "localhost"


def test_a_port_that_is_not_a_number_is_explained(site: WebSite) -> None:
    answer = site.post("/mqtt", {**MQTT_FORM, "mqtt.port": "eighteen"})
    assert answer.status_code == 400
    assert 'id="mqtt.port-error" role="alert">enter a whole number' in answer.get_data(as_text=True)


def test_bad_topic_is_shown_beside_it(site: WebSite) -> None:
    answer = site.post("/mqtt", {**MQTT_FORM, "mqtt.base_topic": "home/#"})
    assert (
        'id="mqtt.base_topic-error" role="alert">&#39;home/#&#39;: a topic without wildcards'
        in answer.get_data(as_text=True)
    )


def test_empty_password_keeps_the_stored_one_and_clear_removes_it(site: WebSite) -> None:
    site.post("/mqtt", {**MQTT_FORM, "mqtt.password": "first secret"})
    page = site.text("/mqtt")
    assert 'placeholder="(unchanged)"' in page and "first secret" not in page
    site.post("/mqtt", {**MQTT_FORM, "mqtt.host": "other.lan"})
    assert site.controller.config.mqtt.password == "first secret"
    assert site.controller.config.mqtt.host == "other.lan"
    site.post("/mqtt", {**MQTT_FORM, "mqtt.password.clear": "on"})
    assert site.controller.config.mqtt.password == ""


def test_mqtt_test_connection_reaches_a_real_broker(site: WebSite, mosquitto: Broker) -> None:
    answer = site.post(
        "/mqtt/test", {**MQTT_FORM, "mqtt.host": "127.0.0.1", "mqtt.port": str(mosquitto.port)}
    )
    assert answer.json == {"ok": True, "message": f"Connected to 127.0.0.1:{mosquitto.port}."}
    assert site.controller.config.mqtt.host == "localhost", "testing saves nothing"


def test_mqtt_test_connection_says_why_it_failed(site: WebSite) -> None:
    port = free_port()
    answer = site.post(
        "/mqtt/test", {**MQTT_FORM, "mqtt.host": "127.0.0.1", "mqtt.port": str(port)}
    )
    assert answer.json["ok"] is False
    assert answer.json["message"].startswith(f"Cannot reach 127.0.0.1:{port}")


def test_mqtt_test_connection_validates_first(site: WebSite) -> None:
    answer = site.post("/mqtt/test", {**MQTT_FORM, "mqtt.port": "0"})
    assert answer.status_code == 400
    assert "mqtt.port" in answer.json["errors"]


def test_behaviour_settings_are_saved(site: WebSite) -> None:
    answer = site.post("/behaviour", BEHAVIOUR_FORM)
    assert answer.status_code == 302
    config = site.controller.config
    assert (
        config.mood.dwell_s,
        config.mood.min_switch_interval_s,
        config.mood.threshold,
        config.mood.absent_after_s,
        config.player.quiet_hours,
        config.camera.fps,
    ) == (12.0, 300.0, 0.5, 90.0, "22:00-07:00", 4.0)
    assert config.web.preview is False, "an unticked box is false"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("mood.threshold", "1.5", "1.5 is out of range (allowed: a number from 0 to 1)"),
        ("mood.dwell_s", "soon", "enter a number"),
        ("player.quiet_hours", "22-7", "expected HH:MM-HH:MM"),
        ("camera.fps", "0", "0.0 is out of range"),
    ],
)
def test_behaviour_problems_are_shown_beside_their_field(
    site: WebSite, field: str, value: str, problem: str
) -> None:
    before = site.controller.config
    answer = site.post("/behaviour", {**BEHAVIOUR_FORM, field: value})
    assert answer.status_code == 400
    assert f'id="{field}-error" role="alert">' in answer.get_data(as_text=True)
    assert problem in answer.get_data(as_text=True).replace("&#39;", "'")
    assert site.controller.config == before


def test_every_problem_of_a_form_is_shown_at_once(site: WebSite) -> None:
    """The README promises every field's problem beside it: a form with three mistakes
    (one not even a number) shows all three, and saves nothing."""
    before = site.controller.config
    answer = site.post(
        "/behaviour",
        {
            **BEHAVIOUR_FORM,
            "mood.dwell_s": "soon",
            "mood.threshold": "1.5",
            "player.quiet_hours": "late",
        },
    )
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    for field in ("mood.dwell_s", "mood.threshold", "player.quiet_hours"):
        assert f'id="{field}-error" role="alert">' in page, field
    assert site.controller.config == before


def test_controller_refusal_is_what_the_page_shows(site: WebSite) -> None:
    """The page must show the controller's own ConfigError, not a guess of its own."""
    with pytest.raises(ConfigError) as refused:
        site.controller.update_settings({"mood": {"threshold": 1.5}})
    answer = site.post("/behaviour", {**BEHAVIOUR_FORM, "mood.threshold": "1.5"})
    assert refused.value.problem in answer.get_data(as_text=True)


def test_camera_snapshot_only_when_allowed(site: WebSite) -> None:
    assert site.client.get("/snapshot.jpg").status_code == 404
    assert "Take a snapshot" not in site.text("/behaviour")
    site.post("/behaviour", {**BEHAVIOUR_FORM, "web.preview": "on"})
    assert "Take a snapshot" in site.text("/behaviour")
    answer = site.client.get("/snapshot.jpg")
    assert answer.status_code == 200 and answer.mimetype == "image/jpeg"
    assert answer.data == FAKE_JPEG
    assert answer.headers["Cache-Control"] == "no-store", "the browser must not keep it either"
    site.post("/logout")
    assert site.client.get("/snapshot.jpg").status_code == 302


def test_no_camera_frame_yet_is_said_plainly(tmp_path: Path) -> None:
    site = build_site(tmp_path, snapshot=lambda: None, web={"preview": True})
    site.set_password()
    answer = site.client.get("/snapshot.jpg")
    assert answer.status_code == 503
    assert "No camera frame yet." in answer.get_data(as_text=True)
