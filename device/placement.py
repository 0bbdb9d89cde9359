"""How far a face appears to be, and advice for placing the camera (no I/O, no clock).

A face is about 15 cm wide; through a camera with horizontal field of view `hfov_deg`
it spans 0.15 / (2 d tan(hfov / 2)) of the frame's width at d metres. Read backwards,
a face box's width gives its distance. The limits are those measured by `make bench`'s
range table: the scan finds nearly every face at least `MIN_FACE_PX` wide.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from device.detector import Face

FACE_WIDTH_M = 0.15
MIN_FACE_PX = 40  # narrower faces are found less reliably (bench: range table)
NEAR_LIMIT_M = 0.5  # nearer, a face overfills the detector's view of the whole frame
EDGE_SHARE = 0.03  # a face this close to a frame edge (share of its width) may be cut off


def _span(distance_m: float, hfov_deg: float) -> float:
    """The width of the scene at `distance_m`, in metres."""
    return 2 * distance_m * math.tan(math.radians(hfov_deg) / 2)


def face_distance_m(face_width_px: float, frame_width_px: int, hfov_deg: float) -> float:
    """Distance of a face from the width of its box."""
    share = face_width_px / frame_width_px
    return FACE_WIDTH_M / (share * _span(1.0, hfov_deg))


def reach_m(frame_width_px: int, hfov_deg: float) -> float:
    """The farthest a face can sit and still be `MIN_FACE_PX` wide in the frame."""
    return face_distance_m(MIN_FACE_PX, frame_width_px, hfov_deg)


def describe_range(frame_width_px: int, frame_height_px: int, hfov_deg: float) -> str:
    return (
        f"faces found from {NEAR_LIMIT_M:g} m to about {reach_m(frame_width_px, hfov_deg):.1f} m "
        f"({frame_width_px}×{frame_height_px}, {hfov_deg:g}° field of view)"
    )


def advice(face: Face, frame_width_px: int, frame_height_px: int, hfov_deg: float) -> list[str]:
    """What a person setting the device up should know about where this face is."""
    notes = []
    if face.width < MIN_FACE_PX:
        notes.append(
            f"face only {face.width:.0f} px wide: too far for reliable detection "
            f"(at least {MIN_FACE_PX} px; move the device closer or raise the resolution)"
        )
    margin = EDGE_SHARE * frame_width_px
    if (
        face.x < margin
        or face.y < margin
        or face.x + face.width > frame_width_px - margin
        or face.y + face.height > frame_height_px - margin
    ):
        notes.append("face at the edge of the picture: aim the camera at where people sit")
    if face_distance_m(face.width, frame_width_px, hfov_deg) < NEAR_LIMIT_M:
        notes.append(f"face closer than {NEAR_LIMIT_M:g} m: it may not be found")
    return notes


def draw_preview(rgb: np.ndarray, faces: list[Face], hfov_deg: float) -> np.ndarray:
    """The setup page's snapshot (BGR): faces boxed with their distance, and the advice
    for the nearest face (or that none is in view) written at the top left."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    height, width = rgb.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    green, yellow = (80, 200, 80), (60, 220, 255)
    for face in faces:
        top_left = (round(face.x), round(face.y))
        bottom_right = (round(face.x + face.width), round(face.y + face.height))
        cv2.rectangle(bgr, top_left, bottom_right, green, 2)
        label = f"~{face_distance_m(face.width, width, hfov_deg):.1f} m"
        cv2.putText(bgr, label, (top_left[0], max(top_left[1] - 8, 16)), font, 0.7, green, 2)
    notes = advice(faces[0], width, height, hfov_deg) if faces else ["no face in view"]
    for row, note in enumerate(notes):
        (text_w, text_h), _ = cv2.getTextSize(note, font, 0.6, 1)
        top = 8 + 28 * row
        cv2.rectangle(bgr, (4, top), (16 + text_w, top + text_h + 12), (0, 0, 0), -1)
        cv2.putText(bgr, note, (10, top + text_h + 5), font, 0.6, yellow, 1, cv2.LINE_AA)
    return bgr
