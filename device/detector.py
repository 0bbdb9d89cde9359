"""Face detection: MediaPipe's BlazeFace short-range model, decoded in numpy.

The model (models/face_detection_short_range.tflite, Apache-2.0) takes a 128×128 RGB
image scaled to [-1, 1] and returns, for each of 896 fixed anchors, a box regression
and a score. We generate the anchors the way MediaPipe's SsdAnchorsCalculator does
for this model, decode the boxes, and merge overlaps with weighted non-maximum
suppression (MediaPipe's default for faces), so the device needs no mediapipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.runtime import load_interpreter

INPUT_SIZE = 128
# SsdAnchorsCalculator options of face_detection_short_range.
_STRIDES = (8, 16, 16, 16)
_ANCHORS_PER_LAYER = 2  # aspect ratio 1.0, plus the interpolated scale of the same ratio
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


def ssd_anchors() -> np.ndarray:
    """Anchor centres (x, y), shape (896, 2), normalised to the input. Sizes are fixed at 1."""
    centres = []
    layer = 0
    while layer < len(_STRIDES):
        stride = _STRIDES[layer]
        same = sum(1 for s in _STRIDES[layer:] if s == stride)  # layers sharing this stride
        cells = INPUT_SIZE // stride
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, same * _ANCHORS_PER_LAYER, axis=1).reshape(-1, 2))
        layer += same
    return np.concatenate(centres).astype(np.float32)


def decode_boxes(regressors: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Raw regressors (N, 16) -> boxes (N, 4) as x0, y0, x1, y1 normalised to the input."""
    centre = regressors[:, :2] / INPUT_SIZE + anchors
    half = regressors[:, 2:4] / INPUT_SIZE / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou: float = _NMS_IOU
) -> list[tuple[np.ndarray, float]]:
    """Merge overlapping boxes: each cluster becomes its score-weighted mean box, best score."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    merged = []
    while len(scores):
        overlap = _iou(boxes[0], boxes) > iou
        overlap[0] = True
        weights = scores[overlap][:, None]
        merged.append(((boxes[overlap] * weights).sum(0) / weights.sum(), float(scores[0])))
        boxes, scores = boxes[~overlap], scores[~overlap]
    return merged


class FaceDetector:
    def __init__(self, model: Path, threads: int = 1, min_score: float = 0.5) -> None:
        self._interpreter = load_interpreter(model, threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {o["name"]: o["index"] for o in self._interpreter.get_output_details()}
        self._regressors = outputs["regressors"]
        self._classificators = outputs["classificators"]
        self._anchors = ssd_anchors()
        self.min_score = min_score

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB frame (H, W, 3, uint8), largest first."""
        height, width = rgb.shape[:2]
        scale = INPUT_SIZE / max(height, width)
        resized = cv2.resize(
            rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
        )
        # Letterbox into the square input, centred, as MediaPipe does.
        pad_x = (INPUT_SIZE - resized.shape[1]) // 2
        pad_y = (INPUT_SIZE - resized.shape[0]) // 2
        square = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        square[pad_y : pad_y + resized.shape[0], pad_x : pad_x + resized.shape[1]] = resized
        self._interpreter.set_tensor(self._input, (square / 127.5 - 1.0)[None])
        self._interpreter.invoke()
        regressors = self._interpreter.get_tensor(self._regressors)[0]
        logits = self._interpreter.get_tensor(self._classificators)[0, :, 0].astype(np.float64)
        scores = 1 / (1 + np.exp(-np.clip(logits, -_SCORE_CLIP, _SCORE_CLIP)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        boxes = decode_boxes(regressors[keep], self._anchors[keep])
        faces = []
        for (x0, y0, x1, y1), score in weighted_nms(boxes, scores[keep]):
            left = max((x0 * INPUT_SIZE - pad_x) / scale, 0.0)
            top = max((y0 * INPUT_SIZE - pad_y) / scale, 0.0)
            right = min((x1 * INPUT_SIZE - pad_x) / scale, float(width))
            bottom = min((y1 * INPUT_SIZE - pad_y) / scale, float(height))
            if right > left and bottom > top:
                faces.append(
                    Face(float(left), float(top), float(right - left), float(bottom - top), score)
                )
        return sorted(faces, key=lambda f: f.area, reverse=True)


def crop_face(gray: np.ndarray, face: Face, size: tuple[int, int], margin: float) -> np.ndarray:
    """A square crop around `face` with `margin` (a fraction of its size), resized to `size`.

    Parts outside the frame are filled by replicating the border, so a face at the edge
    keeps its proportions.
    """
    side = max(face.width, face.height) * (1 + margin)
    cx, cy = face.x + face.width / 2, face.y + face.height / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + round(side), y0 + round(side)
    height, width = gray.shape[:2]
    pad = max(0, -x0, -y0, x1 - width, y1 - height)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return cv2.resize(gray[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
