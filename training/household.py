"""How much the household calibration gains, over random draws of the taught faces and several
household cameras: ``python -m training.household --model M --data DIR``.

``tests/test_calibration.py`` teaches the first 10 faces per emotion through one fixed camera;
the gain it measures depends on which faces those are. Here each household shift is taught
``--draws`` random sets of 10 faces per emotion (of 160 PublicTest faces per emotion, 7 fewer
for disgust's 56) and scored on the others, through the shift and unshifted. Reports each
shift's mean, minimum and maximum gain in accuracy, and the change on unshifted faces.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from training import EMOTIONS

PER_EMOTION = 160
TAUGHT = 10


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(
        ".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


def household_camera(face: np.ndarray) -> np.ndarray:
    """A fixed shift that mimics a poor webcam and an unusual face: a dim warm lamp (gamma,
    low contrast, lifted blacks), a tilted, off-centre, closer crop, blur and heavy JPEG."""
    height, width = face.shape
    light = 0.25 + 0.55 * (face.astype(np.float32) / 255.0) ** 1.8
    tilt = cv2.getRotationMatrix2D((width / 2 + 3, height / 2 + 4), 9, 1.15)
    turned = cv2.warpAffine(light, tilt, (width, height), borderMode=cv2.BORDER_REFLECT)
    blurred = cv2.GaussianBlur(turned, (0, 0), 1.1)
    return _jpeg(blurred * 255, 25)


def side_light(face: np.ndarray) -> np.ndarray:
    """A window to one side: light falling off across the face, the opposite tilt, a
    horizontal stretch (a wide-angle lens near the frame's edge) and sensor noise."""
    height, width = face.shape
    ramp = np.linspace(1.35, 0.45, width, dtype=np.float32)[None, :]
    lit = face.astype(np.float32) * ramp
    tilt = cv2.getRotationMatrix2D((width / 2 - 2, height / 2), -8, 1.0)
    tilt[0, :2] *= 1 / 1.15  # the face 15 % wider
    tilt[0, 2] = width / 2 - 2 - (tilt[0, 0] * (width / 2 - 2) + tilt[0, 1] * height / 2)
    turned = cv2.warpAffine(lit, tilt, (width, height), borderMode=cv2.BORDER_REFLECT)
    noise = np.random.default_rng(int(face.sum())).normal(0, 9, face.shape)
    return _jpeg(turned + noise, 60)


def backlit_far(face: np.ndarray) -> np.ndarray:
    """A face far off against a bright window: the camera exposes for the window (the face
    dark and flat), the face few pixels across (upscaled from 20 px), and a lower, looser
    crop."""
    height, width = face.shape
    dark = 10 + 0.45 * face.astype(np.float32)
    crop = cv2.getRotationMatrix2D((width / 2, height / 2 - 3), 0, 0.9)
    moved = cv2.warpAffine(dark, crop, (width, height), borderMode=cv2.BORDER_REPLICATE)
    small = cv2.resize(moved, (20, 20), interpolation=cv2.INTER_AREA)
    return _jpeg(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR), 50)


SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "lamp (test_calibration)": household_camera,
    "side light": side_light,
    "backlit, far": backlit_far,
}


def model_outputs(model: Path, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from device.classifier import EmotionClassifier

    classifier = EmotionClassifier(model)
    outputs = [classifier.predict(face) for face in faces]
    return np.stack([o.features for o in outputs]), np.stack([o.probabilities for o in outputs])


def measure(model: Path, data: Path, draws: int, seed: int) -> dict[str, dict[str, float]]:
    from device.calibration import Samples, figures, fit
    from training.data import load_folder

    test = load_folder(data / "test")
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [rng.permutation(np.flatnonzero(test.labels == k))[:PER_EMOTION] for k in range(7)]
    )
    faces, labels = test.images[chosen], test.labels[chosen]
    clean = model_outputs(model, faces)
    result = {}
    for name, shift in SHIFTS.items():
        shifted = model_outputs(model, np.stack([shift(f) for f in faces]))
        gains, unshifted = [], []
        for draw in range(draws):
            draw_rng = np.random.default_rng([seed, draw])
            taught = np.zeros(len(labels), bool)
            for k in range(len(EMOTIONS)):
                taught[draw_rng.permutation(np.flatnonzero(labels == k))[:TAUGHT]] = True
            times = np.zeros(len(labels))
            samples = Samples.of(
                shifted[0][taught], shifted[1][taught], labels[taught], times[taught]
            )
            calibration = fit(samples, len(EMOTIONS))
            for (features, probabilities), out in ((shifted, gains), (clean, unshifted)):
                held = ~taught
                after = calibration.logits(features[held], probabilities[held]).argmax(axis=1)
                f = figures(labels[held], probabilities[held].argmax(axis=1), after, 7)
                out.append(100 * (f.accuracy_after - f.accuracy_before))
        before = 100 * float(np.mean(shifted[1].argmax(axis=1) == labels))
        result[name] = {
            "accuracy_before": round(before, 1),
            "gain_mean": round(float(np.mean(gains)), 2),
            "gain_min": round(float(np.min(gains)), 2),
            "gain_max": round(float(np.max(gains)), 2),
            "unshifted_change_mean": round(float(np.mean(unshifted)), 2),
            "unshifted_change_min": round(float(np.min(unshifted)), 2),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="the .tflite (its .json beside it)")
    p.add_argument("--data", required=True, type=Path, help="Kaggle root (its test split)")
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.model, args.data, args.draws, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
