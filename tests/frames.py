"""Test frames and clips built from the shared FER2013 test faces.

A 48×48 face is enlarged and pasted into a larger frame over a plain, lit background,
as a face appears to a camera across a room; a clip is a sequence of such frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = (640, 480)  # width, height


def background(seed: int = 0, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A grey wall with a soft gradient and a little sensor noise (RGB)."""
    width, height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(90, 140, width, dtype=np.float32)[None, :].repeat(height, 0)
    noisy = ramp + rng.normal(0, 3, (height, width)).astype(np.float32)
    gray = np.clip(noisy, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def face_frame(
    face: np.ndarray,
    face_px: int = 200,
    centre: tuple[int, int] | None = None,
    seed: int = 0,
    size: tuple[int, int] = FRAME_SIZE,
) -> np.ndarray:
    """`face` (grayscale) enlarged to `face_px` and pasted at `centre` of a background."""
    frame = background(seed, size)
    big = cv2.resize(face, (face_px, face_px), interpolation=cv2.INTER_CUBIC)
    cx, cy = centre or (size[0] // 2, size[1] // 2)
    x0, y0 = cx - face_px // 2, cy - face_px // 2
    frame[y0 : y0 + face_px, x0 : x0 + face_px] = cv2.cvtColor(big, cv2.COLOR_GRAY2RGB)
    return frame


def face_files(fer2013: Path, emotion: str, count: int | None = None, seed: int = 0) -> list[Path]:
    files = sorted((fer2013 / "test" / emotion).glob("*.jpg"))
    order = np.random.default_rng(seed).permutation(len(files))
    chosen = [files[i] for i in order]
    return chosen if count is None else chosen[:count]


def read_gray(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(path)
    return image


def write_clip(path: Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """An MJPG AVI of RGB frames at `fps`."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
