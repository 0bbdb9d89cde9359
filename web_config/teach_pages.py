"""Teach it your faces: the guided calibration page, Reset, and the status page's "Wrong mood"."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from device import EMOTIONS
from device.teach import PROMPTS
from web_config.app import site

blueprint = Blueprint("teach", __name__)


def _answer(action: Any) -> Any:
    """JSON of what `action()` returns, or its ValueError (not available, nothing to correct)
    as a 400 with the reason."""
    try:
        return jsonify(action())
    except ValueError as err:
        return jsonify(error=str(err)), 400


@blueprint.route("/teach")
def page() -> str:
    status = site().controller.status.snapshot()
    return render_template(
        "teach.html", calibration=status["calibration"], prompts=PROMPTS, emotions=EMOTIONS
    )


@blueprint.route("/api/teach")
def state() -> Any:
    return _answer(site().controller.teach_state)


@blueprint.route("/api/teach/start", methods=["POST"])
def start() -> Any:
    return _answer(site().controller.teach_start)


@blueprint.route("/api/teach/finish", methods=["POST"])
def finish() -> Any:
    """The before/after figures, cross-validated on what the session just recorded."""
    return _answer(site().controller.teach_finish)


def _form_action(action: Any, done: str) -> Any:
    try:
        flash(done.format(action()))
    except ValueError as err:
        flash(f"Not done: {err}.")
    return redirect(url_for("teach.page"))


@blueprint.route("/teach/save", methods=["POST"])
def save() -> Any:
    return _form_action(
        site().controller.teach_save,
        "Saved {} samples; the calibration is refitted in the background.",
    )


@blueprint.route("/teach/discard", methods=["POST"])
def discard() -> Any:
    return _form_action(site().controller.teach_discard, "Discarded: nothing was kept.")


@blueprint.route("/teach/reset", methods=["POST"])
def reset() -> Any:
    return _form_action(
        site().controller.calibration_reset,
        "Back to the shipped model: the household's samples are deleted.",
    )


@blueprint.route("/api/correct", methods=["POST"])
def correct() -> Any:
    """{"right": emotion[, "wrong": emotion]}: "that was not the current mood, it was …"."""
    command = request.get_json(silent=True)
    if not isinstance(command, dict) or not isinstance(command.get("right"), str):
        return jsonify(error='expected {"right": emotion}'), 400
    wrong = command.get("wrong")
    return _answer(
        lambda: {
            "frames": site().controller.correct_mood(
                command["right"], wrong if isinstance(wrong, str) else None
            )
        }
    )
