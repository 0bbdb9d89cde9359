"""Placement help: how far a face appears to be, and what to tell the person setting up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from device.config import Config
from device.detector import Face
from device.placement import MIN_FACE_PX, advice, describe_range, face_distance_m, reach_m
from tests.room import FRAME, face_px, lamp_light, paste, people, room


@pytest.mark.parametrize("distance", [0.5, 1.0, 2.0, 3.0, 4.0])
def test_distance_reads_back_from_the_face_width(distance: float) -> None:
    assert face_distance_m(face_px(distance), FRAME[0], 66.0) == pytest.approx(distance)


def test_a_wider_lens_sees_less_far() -> None:
    """Camera Module 3 at 1536 px: about 4.4 m with the standard lens, 2.4 m with the wide."""
    assert reach_m(1536, 66.0) == pytest.approx(face_distance_m(MIN_FACE_PX, 1536, 66.0))
    assert 4.0 < reach_m(1536, 66.0) < 5.0
    assert 2.0 < reach_m(1536, 102.0) < 3.0
    assert reach_m(640, 66.0) < 2.0  # the old 640×480 default
    assert "to about 4.4 m (1536×864, 66° field of view)" in describe_range(1536, 864, 66.0)


def test_advice_for_small_faces_edges_and_faces_too_near() -> None:
    def notes(face: Face) -> str:
        return " | ".join(advice(face, 1536, 864, 66.0))

    assert notes(Face(700, 300, 89, 89, 0.9)) == ""  # 2 m, in the middle
    assert "too far" in notes(Face(700, 300, 30, 30, 0.9))
    assert "edge" in notes(Face(5, 300, 89, 89, 0.9))
    assert "edge" in notes(Face(1536 - 90, 300, 89, 89, 0.9))
    assert "closer than 0.5 m" in notes(Face(500, 100, 500, 500, 0.9))


def test_detect_says_how_far_each_face_is(tmp_path: Path) -> None:
    """`moodmelody detect` on a room photo: a listener at 3 m, another at the edge."""
    cast = people(Config().model_path("face_detector"), 4)
    canvas = room(2)
    paste(canvas, cast[0], face_px(3.0), (800, 420), 1)
    paste(canvas, cast[1], face_px(1.5), (face_px(1.5) * 0.5, 400), 2)
    image = tmp_path / "room.png"
    cv2.imwrite(str(image), cv2.cvtColor(lamp_light(canvas, 2), cv2.COLOR_RGB2BGR))
    config = tmp_path / "config.toml"
    config.write_text("")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "device.cli",
            "detect",
            "--config",
            str(config),
            "--json",
            str(image),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (record,) = [json.loads(line) for line in out.stdout.splitlines()]
    faces = sorted(record["faces"], key=lambda f: f["distance_m"])
    assert [f["distance_m"] for f in faces] == pytest.approx([1.5, 3.0], abs=0.4)
    assert any("edge" in note for note in faces[0]["advice"])
    assert faces[1]["advice"] == []


def test_check_reports_the_range_of_the_configured_camera(tmp_path: Path) -> None:
    """The wide lens sees a face at half the distance: `check` says so from the frame read."""
    from device.checks import run_checks

    image = tmp_path / "room.png"
    cv2.imwrite(str(image), lamp_light(room(4), 4))
    config = tmp_path / "config.toml"
    config.write_text(f'[camera]\nsource = "{image}"\nhfov_deg = 102\n')
    lines = {name: (ok, message) for name, ok, message in run_checks(config)}
    ok, message = lines["camera"]
    assert ok, message
    expected = f"to about {reach_m(1536, 102.0):.1f} m (1536×864, 102° field of view)"
    assert "1536×864 frame read" in message and expected in message


def test_the_preview_shows_distances_and_warns(tmp_path: Path) -> None:
    """The snapshot a person looks at while placing the camera: boxes with distances, and
    the warning for a face at the edge written across the top (none for a good view)."""
    from device.placement import draw_preview

    canvas = room(6)
    frame = lamp_light(canvas, 6)
    centred = Face(700, 380, 89, 95, 0.9)
    at_edge = Face(2, 380, 89, 95, 0.9)
    good = draw_preview(frame, [centred], 66.0)
    bad = draw_preview(frame, [at_edge], 66.0)
    plain = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    text_band = (slice(0, 40), slice(0, 600))
    label = (slice(340, 380), slice(700, 800))
    assert (good[text_band] == plain[text_band]).all()  # nothing to warn about
    assert (bad[text_band] != plain[text_band]).any(axis=2).sum() > 500
    assert (good[label] != plain[label]).any(axis=2).sum() > 100  # "~2.0 m"
    cv2.imwrite(str(tmp_path / "preview.png"), bad)
