"""Face detection: MediaPipe's BlazeFace models, decoded in numpy, in any square of a frame.

Two models from the mediapipe wheel (Apache-2.0, see models/): short-range (128×128
input, 896 anchors) is made for faces that fill a good part of its input; full-range
(192×192, 2,304 anchors at stride 4) also finds faces a tenth of its input wide. Each
takes an RGB image scaled to [-1, 1] and returns, per fixed anchor, a box regression
and a score. We generate the anchors the way MediaPipe's SsdAnchorsCalculator does for
each model, decode the boxes, and merge overlaps with weighted non-maximum suppression
(MediaPipe's default for faces), so the device needs no mediapipe.

A detector looks at one `Window` of the frame: the whole frame letterboxed (what
MediaPipe does), a tile of it, or a region around a face being followed. The window is
cut from the full-resolution frame, so a small, distant face keeps its own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.runtime import load_interpreter

# SsdAnchorsCalculator options per input size: strides, and anchors per cell of a layer
# (short-range: aspect ratio 1.0 plus the interpolated scale; full-range: one).
ANCHOR_LAYOUTS = {128: ((8, 16, 16, 16), 2), 192: ((4,), 1)}
_SCORE_CLIP = 100.0
_NMS_IOU = 0.3


@dataclass(frozen=True)
class Face:
    """A detected face in frame pixels: top-left corner, size, and detection score."""

    x: float
    y: float
    width: float
    height: float
    score: float

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2

    def corners(self) -> tuple[float, float, float, float]:
        return self.x, self.y, self.x + self.width, self.y + self.height


@dataclass(frozen=True)
class Window:
    """A square region of a frame in frame pixels; it may reach past the frame's edges,
    which are then padded with black."""

    x: float
    y: float
    side: float

    @classmethod
    def whole(cls, width: int, height: int) -> Window:
        """The whole frame, letterboxed into a centred square."""
        side = max(width, height)
        return cls((width - side) / 2, (height - side) / 2, side)

    @classmethod
    def around(cls, face: Face, scale: float) -> Window:
        """A square `scale` times the face's larger side, centred on it."""
        side = max(face.width, face.height) * scale
        cx, cy = face.centre
        return cls(cx - side / 2, cy - side / 2, side)


def ssd_anchors(input_size: int = 128) -> np.ndarray:
    """Anchor centres (x, y) normalised to the input, one row per anchor (896 for the
    short-range model, 2,304 for full-range). Anchor sizes are fixed at 1."""
    strides, per_cell = ANCHOR_LAYOUTS[input_size]
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = sum(1 for s in strides[layer:] if s == stride)  # layers sharing this stride
        cells = input_size // stride
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, same * per_cell, axis=1).reshape(-1, 2))
        layer += same
    return np.concatenate(centres).astype(np.float32)


def decode_boxes(regressors: np.ndarray, anchors: np.ndarray, input_size: int) -> np.ndarray:
    """Raw regressors (N, 16) -> boxes (N, 4) as x0, y0, x1, y1 normalised to the input."""
    centre = regressors[:, :2] / input_size + anchors
    half = regressors[:, 2:4] / input_size / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one x0, y0, x1, y1 box with each row of `boxes`."""
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float = _NMS_IOU
) -> list[tuple[np.ndarray, float]]:
    """Merge overlapping boxes: each cluster becomes its score-weighted mean box, best score."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    merged = []
    while len(scores):
        overlap = iou(boxes[0], boxes) > threshold
        overlap[0] = True
        weights = scores[overlap][:, None]
        merged.append(((boxes[overlap] * weights).sum(0) / weights.sum(), float(scores[0])))
        boxes, scores = boxes[~overlap], scores[~overlap]
    return merged


def merge_faces(faces: list[Face]) -> list[Face]:
    """One face per cluster of overlapping detections (from overlapping windows), largest
    first."""
    if not faces:
        return []
    boxes = np.array([f.corners() for f in faces], np.float64)
    scores = np.array([f.score for f in faces])
    merged = [
        Face(float(x0), float(y0), float(x1 - x0), float(y1 - y0), score)
        for (x0, y0, x1, y1), score in weighted_nms(boxes, scores)
    ]
    return sorted(merged, key=lambda f: f.area, reverse=True)


class FaceDetector:
    """One BlazeFace model; the anchor layout follows from its input size."""

    def __init__(self, model: Path, threads: int = 1, min_score: float = 0.5) -> None:
        self._interpreter = load_interpreter(model, threads)
        details = self._interpreter.get_input_details()[0]
        self._input = details["index"]
        self.input_size = int(details["shape"][1])
        if self.input_size not in ANCHOR_LAYOUTS:
            raise ValueError(
                f"{model}: a {self.input_size}×{self.input_size} input is not a BlazeFace "
                f"face model (expected {' or '.join(map(str, ANCHOR_LAYOUTS))})"
            )
        # Two outputs: 16 box regressors and 1 score per anchor (their names differ by model).
        outputs = sorted(self._interpreter.get_output_details(), key=lambda o: int(o["shape"][-1]))
        self._classificators, self._regressors = outputs[0]["index"], outputs[1]["index"]
        self._anchors = ssd_anchors(self.input_size)
        self.min_score = min_score

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in the whole of an RGB frame (H, W, 3, uint8), letterboxed, largest first."""
        height, width = rgb.shape[:2]
        return self.detect_in(rgb, Window.whole(width, height))

    def detect_in(self, rgb: np.ndarray, window: Window) -> list[Face]:
        """Faces in one window of the frame, in frame pixels, largest first (parts of a face
        outside the frame are cut off)."""
        self._interpreter.set_tensor(self._input, self._window_input(rgb, window)[None])
        self._interpreter.invoke()
        regressors = self._interpreter.get_tensor(self._regressors)[0]
        logits = self._interpreter.get_tensor(self._classificators)[0, :, 0].astype(np.float64)
        scores = 1 / (1 + np.exp(-np.clip(logits, -_SCORE_CLIP, _SCORE_CLIP)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        boxes = decode_boxes(regressors[keep], self._anchors[keep], self.input_size)
        height, width = rgb.shape[:2]
        faces = []
        for (x0, y0, x1, y1), score in weighted_nms(boxes, scores[keep]):
            left = max(window.x + x0 * window.side, 0.0)
            top = max(window.y + y0 * window.side, 0.0)
            right = min(window.x + x1 * window.side, float(width))
            bottom = min(window.y + y1 * window.side, float(height))
            if right > left and bottom > top:
                faces.append(
                    Face(float(left), float(top), float(right - left), float(bottom - top), score)
                )
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _window_input(self, rgb: np.ndarray, window: Window) -> np.ndarray:
        """The window's pixels resized to the model's square input, scaled to [-1, 1]."""
        size = self.input_size
        height, width = rgb.shape[:2]
        scale = size / window.side
        left, top = max(round(window.x), 0), max(round(window.y), 0)
        right = min(round(window.x + window.side), width)
        bottom = min(round(window.y + window.side), height)
        square = np.full((size, size, 3), -1.0, np.float32)  # black, once scaled
        # Trim to whole multiples of the shrink factor (see `shrink`): under a pixel of input.
        factor = max(int(1 / scale), 1)
        right = left + (right - left) // factor * factor
        bottom = top + (bottom - top) // factor * factor
        out_x = max(round((left - window.x) * scale), 0)
        out_y = max(round((top - window.y) * scale), 0)
        out_w = min(round((right - left) * scale), size - out_x)
        out_h = min(round((bottom - top) * scale), size - out_y)
        if out_w <= 0 or out_h <= 0:
            return square
        resized = shrink(rgb[top:bottom, left:right], (out_w, out_h))
        square[out_y : out_y + out_h, out_x : out_x + out_w] = resized * np.float32(1 / 127.5) - 1
        return square


def shrink(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`pixels` resized to `size` (width, height), averaging when shrinking (INTER_AREA).

    OpenCV averages by a whole factor quickly and by any other factor slowly (5 ms against
    1 ms for a 1000-pixel window here), so the whole part of the factor goes first on the
    pixels that divide evenly, then a small resize does the rest.
    """
    out_w, out_h = size
    factor = min(pixels.shape[1] // out_w, pixels.shape[0] // out_h)
    if factor >= 2:
        rows, cols = pixels.shape[0] // factor * factor, pixels.shape[1] // factor * factor
        pixels = cv2.resize(
            pixels[:rows, :cols], (cols // factor, rows // factor), interpolation=cv2.INTER_AREA
        )
    if pixels.shape[1] == out_w and pixels.shape[0] == out_h:
        return pixels
    shrinking = pixels.shape[1] > out_w
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def crop_face(rgb: np.ndarray, face: Face, size: tuple[int, int], margin: float) -> np.ndarray:
    """A grayscale square crop around `face` with `margin` (a fraction of its size), taken
    from the full-resolution frame and resized to `size`.

    Only the crop is converted to gray. Parts outside the frame are filled by replicating
    the border, so a face at the edge keeps its proportions.
    """
    side = max(face.width, face.height) * (1 + margin)
    cx, cy = face.centre
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + round(side), y0 + round(side)
    height, width = rgb.shape[:2]
    inside = rgb[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    gray = cv2.cvtColor(np.ascontiguousarray(inside), cv2.COLOR_RGB2GRAY)
    pads = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    if any(pads):
        gray = cv2.copyMakeBorder(gray, *pads, cv2.BORDER_REPLICATE)
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
