"""The device's own pages: first run, login, status, Home Assistant (MQTT), behaviour."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from device import EMOTIONS
from device.config import ConfigError, apply_changes
from web_config import auth, forms, security
from web_config.app import site
from web_config.history import COLOURS

logger = logging.getLogger(__name__)

blueprint = Blueprint("pages", __name__)

MQTT_FIELDS = (
    "device.name",
    "device.priority",
    "device.coordinate",
    "mqtt.enabled",
    "mqtt.host",
    "mqtt.port",
    "mqtt.tls",
    "mqtt.ca_file",
    "mqtt.username",
    "mqtt.password",
    "mqtt.base_topic",
    "mqtt.discovery_prefix",
    "mqtt.device_discovery",
)
BEHAVIOUR_FIELDS = (
    "player.autoplay",
    "player.kind",
    "camera.enabled",
    "mood.dwell_s",
    "mood.min_switch_interval_s",
    "mood.threshold",
    "mood.absent_after_s",
    "player.quiet_hours",
    "camera.fps",
    "mood.follow",
    "player.volume_schedule",
    "web.preview",
)
TIMELINE_SPANS = {"6h": 6 * 3600.0, "24h": 24 * 3600.0}


def sentence(text: str) -> str:
    """`text` as a sentence: capital first letter, full stop (a library's message as is)."""
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


def _client() -> str:
    return request.remote_addr or "unknown"


def _locked_out() -> str | None:
    wait = site().limiter.retry_after(_client())
    return f"Too many wrong attempts: try again in {wait:.0f} s." if wait else None


def _set_new_password(
    proof_field: str, proof_ok: Callable[[str], bool], wrong: str
) -> dict[str, str]:
    """Set the form's new password (`password`, repeated in `password2`) if the proof in
    `proof_field` (setup code or current password) passes; returns the problems, by field.

    A wrong proof counts as a failed login attempt.
    """
    locked = _locked_out()
    if locked:
        return {proof_field: locked}
    errors = {}
    if not proof_ok(request.form.get(proof_field, "")):
        site().limiter.failed(_client())
        errors[proof_field] = _locked_out() or wrong
    if request.form.get("password", "") != request.form.get("password2", ""):
        errors["password2"] = "The two passwords differ."
    if not errors:
        try:
            auth.set_password(site().state_dir, request.form.get("password", ""))
        except auth.PasswordError as err:
            errors["password"] = sentence(str(err))
    if not errors:
        site().limiter.succeeded(_client())
        security.log_in(site().password_stamp())
    return errors


@blueprint.route("/setup", methods=["GET", "POST"])
def first_run() -> Any:
    """Choose the admin password, proving with the setup code from the journal who you are."""
    if site().password_is_set():
        return redirect(url_for("pages.login"))
    auth.ensure_setup_code(site().state_dir)
    errors: dict[str, str] = {}
    if request.method == "POST":
        errors = _set_new_password(
            "code",
            functools.partial(auth.setup_code_matches, site().state_dir),
            "This is not the setup code (see the journal: journalctl -u moodmelody).",
        )
        if not errors:
            flash("Password set. Next: link Spotify.")
            return redirect(url_for("spotify.account"))
    return render_template("first_run.html", errors=errors), 400 if errors else 200


@blueprint.route("/password", methods=["GET", "POST"])
def change_password() -> Any:
    """A new admin password; every other browser is logged out by it."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        errors = _set_new_password(
            "current",
            functools.partial(auth.password_matches, site().state_dir),
            "This is not the current password.",
        )
        if not errors:
            logger.info("setup page: admin password changed from %s", _client())
            flash("Password changed. Other browsers have to log in again.")
            return redirect(url_for("pages.status"))
    return render_template("password.html", errors=errors), 400 if errors else 200


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if not site().password_is_set():
        return redirect(url_for("pages.first_run"))
    error = ""
    if request.method == "POST":
        error = _locked_out() or ""
        if not error and auth.password_matches(site().state_dir, request.form.get("password", "")):
            site().limiter.succeeded(_client())
            security.log_in(site().password_stamp())
            return redirect(security.safe_next(request.args.get("next")))
        if not error:
            site().limiter.failed(_client())
            logger.warning("setup page: wrong password from %s", _client())
            error = _locked_out() or "Wrong password."
    return render_template("login.html", error=error), 401 if error else 200


@blueprint.route("/logout", methods=["POST"])
def logout() -> Any:
    session.clear()
    return redirect(url_for("pages.login"))


@blueprint.app_errorhandler(HTTPException)
def http_error(err: HTTPException) -> Any:
    if request.path.startswith("/api/"):
        return jsonify(error=err.description), err.code
    return render_template("error.html", message=err.description), err.code


@blueprint.route("/")
def status() -> str:
    span = request.args.get("span", "6h")
    span = span if span in TIMELINE_SPANS else "6h"
    return render_template(
        "status.html",
        status=site().controller.status.snapshot(),
        emotions=EMOTIONS,
        colours=COLOURS,
        span=span,
        spans=TIMELINE_SPANS,
        timeline=Markup(site().history.svg(TIMELINE_SPANS[span])),  # built with every text escaped
    )


@blueprint.route("/api/status")
def api_status() -> Response:
    snapshot = site().controller.status.snapshot()
    snapshot["now"] = time.time()
    return jsonify(snapshot)


@blueprint.route("/api/timeline")
def api_timeline() -> Response:
    span = TIMELINE_SPANS.get(request.args.get("span", "6h"), TIMELINE_SPANS["6h"])
    return Response(site().history.svg(span), mimetype="image/svg+xml")


@blueprint.route("/api/control", methods=["POST"])
def api_control() -> Any:
    """The status page's buttons: {"autoplay": bool} | {"camera": bool} | {"action": ...}."""
    command = request.get_json(silent=True)
    controller = site().controller
    if not isinstance(command, dict) or len(command) != 1:
        return jsonify(error="expected one of autoplay, camera, action"), 400
    ((name, value),) = command.items()
    if name == "autoplay" and isinstance(value, bool):
        controller.set_autoplay(value, "setup page")
    elif name == "camera" and isinstance(value, bool):
        controller.set_camera(value, "setup page")
    elif name == "action" and value == "next":
        controller.next_track()
    elif name == "action" and value == "pause":
        controller.pause()
    elif name == "action" and value == "play":
        controller.play()
    else:
        return jsonify(error=f"unknown command {name}={value!r}"), 400
    return jsonify(ok=True)


def _settings_page(template: str, names: tuple[str, ...], **extra: Any) -> Any:
    """GET shows the fields; POST saves them all or none, with each problem beside its field."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        errors = forms.save(site().controller, request.form, names)
        if not errors:
            flash("Saved.")
            return redirect(request.path)
    config = site().controller.config
    values = (
        forms.submitted_values(request.form, names)
        if errors
        else forms.current_values(config, names)
    )
    return render_template(
        template,
        fields={name: forms.describe(name) for name in names},
        values=values,
        errors=errors,
        secret_set=forms.stored_secrets(config, names),
        config=config,
        **extra,
    ), 400 if errors else 200


@blueprint.route("/mqtt", methods=["GET", "POST"])
def mqtt() -> Any:
    return _settings_page("mqtt.html", MQTT_FIELDS)


@blueprint.route("/mqtt/test", methods=["POST"])
def mqtt_test() -> Any:
    """Try the entered broker settings without saving them."""
    from device.mqtt import test_connection

    changes, errors = forms.parse(request.form, MQTT_FIELDS)
    if not errors:
        try:
            candidate = apply_changes(site().controller.config, changes, "setup page")
        except ConfigError as err:
            errors = dict(err.problems)
    if errors:
        return jsonify(ok=False, errors=errors), 400
    ok, message = test_connection(candidate.mqtt)
    return jsonify(ok=ok, message=sentence(message))


@blueprint.route("/mqtt/forget", methods=["POST"])
def mqtt_forget() -> Any:
    """Remove this device from Home Assistant: turning MQTT off clears everything it left
    retained on the broker (discovery, states, its place on the shared account)."""
    controller = site().controller
    connected = controller.status.get("mqtt_state") == "connected"
    controller.update_settings({"mqtt": {"enabled": False}}, "setup page: Remove from HA")
    if connected:
        flash("Removed from Home Assistant: its entities are gone and MQTT is off.")
    else:
        flash(
            "MQTT is off. The broker could not be reached, so Home Assistant still lists this "
            "device (unavailable): delete it there."
        )
    return redirect(url_for("pages.mqtt"))


@blueprint.route("/behaviour", methods=["GET", "POST"])
def behaviour() -> Any:
    return _settings_page(
        "behaviour.html", BEHAVIOUR_FIELDS, can_preview=site().snapshot is not None
    )


@blueprint.route("/snapshot.jpg")
def snapshot() -> Response:
    """One camera frame with the detected face boxed: shown, never stored."""
    if site().snapshot is None or not site().controller.config.web.preview:
        abort(404, "The camera preview is off (Behaviour → allow camera preview).")
    jpeg = site().snapshot()
    if jpeg is None:
        abort(503, "No camera frame yet.")
    return Response(jpeg, mimetype="image/jpeg")
