"""The range table of `make bench`: faces found across a living room, and what it costs.

For each distance, people from `faces_in_the_wild` sit for 40 s (200 frames at 5 fps,
swaying a little) in a generated room at 1536×864 (tests/room.py), one after another,
and the daemon's analysis step (`Analyser.analyse`, following the largest face) runs on
every frame as the daemon runs it. A frame counts as found when a face is reported on
the person, false when a face is reported anywhere else; empty rooms count false faces
with nobody there. CPU is process time per analysed frame, the first frames' scans
included. The reference is the analysis before the tracker (the short-range model on
the whole frame letterboxed, then the emotion), on close faces at 640×480.
"""

from __future__ import annotations

import time

import numpy as np

from device.config import Config
from device.detector import crop_face
from device.pipeline import Analyser
from tests.room import CM3_HFOV_DEG, FRAME, face_px, is_found, lamp_light, paste, people, room

DISTANCES_M = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)
SECONDS = 40.0
FPS = 5.0
SWAY = (0, 3, 6, 9, 12, 9, 6, 3)  # px to the right, frame by frame, then again
CAMERAS = {
    "Camera Module 3, standard lens (66°), 1536×864": (FRAME, CM3_HFOV_DEG),
    "Camera Module 3, wide lens (102°), 1536×864": (FRAME, 102.0),
    "USB webcam (70°), 1280×720": ((1280, 720), 70.0),
}


def sitting(
    person_index: int, distance_m: float, size: tuple[int, int], hfov_deg: float
) -> list[tuple[np.ndarray, object]]:
    """The frames (and the true face) of one person sitting at `distance_m`, one per sway
    step; the clip cycles through them."""
    person = people(Config().model_path("face_detector"))[person_index]
    rng = np.random.default_rng(person_index * 100 + round(distance_m * 10))
    width_px = face_px(distance_m, size[0], hfov_deg)
    centre = (
        rng.uniform(width_px * 1.5, size[0] - width_px * 1.5),
        rng.uniform(size[1] * 0.3, size[1] * 0.55),
    )
    empty = room(person_index, size)
    steps = []
    for shift in sorted(set(SWAY)):
        canvas = empty.copy()
        truth = paste(canvas, person, width_px, (centre[0] + shift, centre[1]), person_index)
        steps.append((shift, lamp_light(canvas, person_index), truth))
    by_shift = {shift: (frame, truth) for shift, frame, truth in steps}
    return [by_shift[shift] for shift in SWAY]


def run_clip(analyser: Analyser, views: list[tuple[np.ndarray, object]]) -> tuple[int, int, float]:
    """One person's sitting: (frames found, frames with a false face, CPU seconds)."""
    analyser.tracker.reset()
    found = false = 0
    cpu = 0.0
    for i in range(round(SECONDS * FPS)):
        frame, truth = views[i % len(views)]
        started = time.process_time()
        results = analyser.analyse(frame, now=i / FPS, all_faces=False)
        cpu += time.process_time() - started
        faces = [r.face for r in results]
        hit = is_found(faces, truth)
        found += hit
        false += len(faces) > (1 if hit else 0)
    return found, false, cpu


def distance_row(
    analyser: Analyser, distance_m: float, size: tuple[int, int], hfov_deg: float, count: int
) -> dict[str, float]:
    frames = found = false = 0
    cpu = 0.0
    inferences = analyser.tracker.inferences
    for person_index in range(count):
        f, w, c = run_clip(analyser, sitting(person_index, distance_m, size, hfov_deg))
        found, false, cpu = found + f, false + w, cpu + c
        frames += round(SECONDS * FPS)
    return {
        "distance_m": distance_m,
        "face_px": round(face_px(distance_m, size[0], hfov_deg)),
        "found": round(found / frames, 3),
        "false": round(false / frames, 3),
        "cpu_ms": round(cpu / frames * 1000, 2),
        "detector_calls": round((analyser.tracker.inferences - inferences) / frames, 2),
    }


def empty_rooms(analyser: Analyser, count: int = 4, seconds: float = 60.0) -> dict[str, float]:
    """False faces with nobody there, and the CPU of scanning an empty room: eagerly at
    first, quietly once it has been empty for a while (`TrackerSettings.eager_s`)."""
    eager_s = analyser.tracker.settings.eager_s
    frames = false = 0
    cpu = {"eager": [0.0, 0], "quiet": [0.0, 0]}
    for seed in range(count):
        frame = lamp_light(room(1000 + seed), 1000 + seed)
        analyser.tracker.reset()
        for i in range(round(seconds * FPS)):
            started = time.process_time()
            false += bool(analyser.analyse(frame, now=i / FPS, all_faces=False))
            phase = cpu["eager" if i / FPS < eager_s else "quiet"]
            phase[0] += time.process_time() - started
            phase[1] += 1
            frames += 1
    return {
        "false": round(false / frames, 3),
        "eager_s": eager_s,
        **{f"cpu_ms_{name}": round(total / n * 1000, 2) for name, (total, n) in cpu.items()},
    }


def single_shot_ms(analyser: Analyser, close_frames: list[np.ndarray]) -> float:
    """CPU per frame of the analysis before the tracker, on close faces at 640×480."""
    near, size, margin = analyser.tracker.near, analyser.classifier.input_size, analyser.margin

    def step(frame: np.ndarray) -> None:
        faces = near.detect(frame)
        if faces:
            analyser.classifier.predict(crop_face(frame, faces[0], size, margin))

    for frame in close_frames[:5]:
        step(frame)
    started = time.process_time()
    for frame in close_frames:
        step(frame)
    return (time.process_time() - started) / len(close_frames) * 1000


def range_figures(close_frames: list[np.ndarray]) -> dict[str, object]:
    analyser = Analyser.from_config(Config())
    reference = single_shot_ms(analyser, close_frames)
    cameras = {}
    for name, (size, hfov) in CAMERAS.items():
        main = size == FRAME and hfov == CM3_HFOV_DEG
        cameras[name] = [
            distance_row(analyser, d, size, hfov, count=5 if main else 3) for d in DISTANCES_M
        ]
    main_rows = cameras[next(iter(CAMERAS))]
    room_cpu = float(np.mean([r["cpu_ms"] for r in main_rows if r["distance_m"] <= 4.0]))
    return {
        "cameras": cameras,
        "empty_room": empty_rooms(analyser),
        "reference_cpu_ms": round(reference, 2),
        "room_cpu_ms": round(room_cpu, 2),
        "room_cpu_vs_reference": round(room_cpu / reference, 2),
    }


def print_range(figures: dict[str, object]) -> None:
    for name, rows in figures["cameras"].items():
        print(f"\nrange: {name}, people sitting {SECONDS:g} s each at {FPS:g} fps")
        heads = ("distance, m", "face, px", "found", "false", "CPU, ms", "calls")
        print(" ".join(f"{h:>{w}}" for h, w in zip(heads, (12, 9, 7, 7, 8, 6), strict=True)))
        for r in rows:
            print(
                f"{r['distance_m']:>12.1f} {r['face_px']:>9d} {r['found']:>7.1%} "
                f"{r['false']:>7.1%} {r['cpu_ms']:>8.2f} {r['detector_calls']:>6.2f}"
            )
    empty = figures["empty_room"]
    print(
        f"\nempty room: false faces on {empty['false']:.1%} of frames; CPU per frame "
        f"{empty['cpu_ms_eager']:.2f} ms in the first {empty['eager_s']:g} s, "
        f"{empty['cpu_ms_quiet']:.2f} ms after"
    )
    print(
        f"room clip (0.5-4 m): {figures['room_cpu_ms']:.2f} ms CPU per frame, "
        f"{figures['room_cpu_vs_reference']:.2f}× the analysis before the tracker on close "
        f"faces at 640×480 ({figures['reference_cpu_ms']:.2f} ms)"
    )
