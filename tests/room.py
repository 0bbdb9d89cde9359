"""Living-room frames as a camera on a shelf sees them, built from real photos.

A photo from `faces_in_the_wild` (a face filling the picture) is shrunk to the width a
15 cm face has at a given distance, given a head (hair, neck, shoulders), and pasted
into a generated room (a wall, pictures and shelves, a sofa, a lamp's glow), which is
then dimmed to lamp light with sensor noise. Those photos are for evaluation only:
frames are built in memory and never written anywhere.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.detector import Face, FaceDetector

WILD = Path(__file__).resolve().parent.parent.parent / "shared/datasets/faces_in_the_wild"
FRAME = (1536, 864)  # the Camera Module 3's 16:9 output at its full field of view
FACE_WIDTH_M = 0.15
CM3_HFOV_DEG = 66.0


def face_px(
    distance_m: float, frame_width: int = FRAME[0], hfov_deg: float = CM3_HFOV_DEG
) -> float:
    """How many pixels wide a 15 cm face is at `distance_m` (pinhole camera)."""
    return FACE_WIDTH_M / (2 * distance_m * math.tan(math.radians(hfov_deg) / 2)) * frame_width


@dataclass(frozen=True)
class Person:
    """A photo (RGB) and where its face is in it, as the short-range detector sees it."""

    name: str
    emotion: str
    photo: np.ndarray
    face: Face


@functools.cache
def people(detector_model: Path, count: int = 60) -> tuple[Person, ...]:
    """The first `count` photos (in label-file order, at least 200 px wide) whose face the
    detector finds confidently; the box calibrates how large the face is pasted."""
    detector = FaceDetector(detector_model)
    with (WILD / "labels.csv").open() as labels:
        rows = list(csv.DictReader(labels))
    found = []
    for row in rows:
        bgr = cv2.imread(str(WILD / "img" / row["image"]))
        if bgr is None or bgr.shape[1] < 200:
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        faces = detector.detect(rgb)
        if faces and faces[0].score > 0.7:
            found.append(Person(row["image"], row["emotion"], rgb, faces[0]))
            if len(found) == count:
                break
    return tuple(found)


def room(seed: int, size: tuple[int, int] = FRAME) -> np.ndarray:
    """An empty room, float RGB: a lit wall, pictures and shelves, a sofa, a lamp's glow."""
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    wall = 120 + 40 * xs / width - 30 * ys / height
    canvas = wall[..., None] * np.array([1.0, 0.95, 0.85], np.float32)
    for _ in range(rng.integers(6, 12)):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(40, width // 3))
        y1 = y0 + int(rng.integers(20, height // 3))
        cv2.rectangle(canvas, (x0, y0), (x1, y1), rng.uniform(20, 220, 3).tolist(), -1)
        if rng.random() < 0.5:
            cv2.rectangle(canvas, (x0, y0), (x1, y1), rng.uniform(0, 255, 3).tolist(), 3)
    sofa_top = int(height * rng.uniform(0.6, 0.75))
    cv2.rectangle(canvas, (0, sofa_top), (width, height), rng.uniform(40, 160, 3).tolist(), -1)
    grain = cv2.GaussianBlur(rng.normal(0, 12, (height, width)).astype(np.float32), (0, 0), 3)
    canvas += grain[..., None]
    lamp_x, lamp_y = rng.integers(0, width), rng.integers(0, height // 2)
    glow = np.exp(-((xs - lamp_x) ** 2 + (ys - lamp_y) ** 2) / (2 * (width / 3) ** 2))
    return canvas * (0.6 + 0.6 * glow)[..., None]


def paste(
    canvas: np.ndarray, person: Person, width_px: float, centre: tuple[float, float], seed: int
) -> Face:
    """Paste `person` with their face `width_px` wide centred at `centre`; returns where the
    face is in the frame."""
    rng = np.random.default_rng(seed)
    box = person.face
    scale = width_px / box.width
    cx, cy = centre
    hair = (rng.uniform(10, 90, 3) * np.array([1.0, 0.8, 0.6])).tolist()
    axes = (int(0.62 * width_px) + 1, int(0.78 * width_px) + 1)
    cv2.ellipse(canvas, (int(cx), int(cy - 0.12 * width_px)), axes, 0, 0, 360, hair, -1)
    shoulders = (int(1.4 * width_px) + 1, int(0.95 * width_px) + 1)
    clothes = rng.uniform(20, 220, 3).tolist()
    cv2.ellipse(canvas, (int(cx), int(cy + 1.5 * width_px)), shoulders, 0, 0, 360, clothes, -1)
    photo = person.photo
    cheeks = photo[
        int(box.y + box.height * 0.4) : int(box.y + box.height * 0.6),
        int(box.x + box.width * 0.3) : int(box.x + box.width * 0.7),
    ]
    neck = (
        (int(cx - 0.25 * width_px), int(cy)),
        (int(cx + 0.25 * width_px), int(cy + 0.8 * width_px)),
    )
    cv2.rectangle(canvas, *neck, cheeks.reshape(-1, 3).mean(0).tolist(), -1)

    small = cv2.resize(
        photo,
        None,
        fx=scale,
        fy=scale,
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    ).astype(np.float32)
    face_cx, face_cy = (box.x + box.width / 2) * scale, (box.y + box.height / 2) * scale
    mask = np.zeros(small.shape[:2], np.float32)
    mask_axes = (max(1, int(0.5 * box.width * scale)), max(1, int(0.62 * box.height * scale)))
    cv2.ellipse(mask, (int(face_cx), int(face_cy)), mask_axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.04 * width_px))[..., None]
    left, top = round(cx - face_cx), round(cy - face_cy)
    height, width = canvas.shape[:2]
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + small.shape[1], width), min(top + small.shape[0], height)
    part = small[y0 - top : y1 - top, x0 - left : x1 - left]
    weight = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - weight) + part * weight
    face_height = box.height * scale
    return Face(cx - width_px / 2, cy - face_height / 2, width_px, face_height, 1.0)


def lamp_light(canvas: np.ndarray, seed: int) -> np.ndarray:
    """Evening light on a small sensor: dimmer, warm, a little soft, with noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    lit = canvas * rng.uniform(0.55, 1.0) * np.array([1.05, 1.0, 0.85], np.float32)
    lit = cv2.GaussianBlur(lit, (0, 0), 0.6)
    lit += rng.normal(0, 3.5, lit.shape).astype(np.float32)
    return np.clip(lit, 0, 255).astype(np.uint8)


def is_found(faces: list[Face], truth: Face) -> bool:
    """Some detected face is centred on the true face and about its size."""
    cx, cy = truth.centre
    return any(
        f.x <= cx <= f.x + f.width
        and f.y <= cy <= f.y + f.height
        and 0.5 < f.width / truth.width < 2
        for f in faces
    )
