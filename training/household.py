"""How much the household calibration gains, over random draws of the taught faces and several
household cameras: ``python -m training.household --model M --data DIR``.

``tests/test_calibration.py`` teaches the first 10 faces per emotion through one fixed camera;
the gain it measures depends on which faces those are. Here each household shift is taught
``--draws`` random sets of 10 faces per emotion (of 160 faces per emotion, fewer for disgust)
and scored on the others, through the shift and unshifted. Every face is read as it is and
denoised, as the device reads it; a calibration that chooses the denoised readings is scored on
them, against the shipped model on the faces as they are. Reports each shift's mean, minimum
and maximum gain in accuracy, the change on unshifted faces, and how many draws denoised.

The calibration's settings are chosen with ``--split validation --tune``: on the Training
faces the model held out for validation (never on PublicTest), checked on Training faces it
was fitted on (``--split train``), and only on the shifts of `SHIFTS`. The figures are then
reported on PublicTest (``--split test``, the default), for those shifts and for the held-out
ones of `HELD_OUT`, which played no part in the choice.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def overhead_cold(face: np.ndarray) -> np.ndarray:
    """Held out: never used to choose the calibration's settings. A cold overhead tube: light
    from above (the brow bright and clipped, the chin in shadow), a looser crop low and to the
    left, the head moving (a diagonal motion blur) and a mid-quality JPEG."""
    height, width = face.shape
    ramp = np.linspace(1.5, 0.55, height, dtype=np.float32)[:, None]
    lit = np.clip(face.astype(np.float32) * ramp + 15, 0, 255)
    crop = cv2.getRotationMatrix2D((width / 2 - 3, height / 2 + 3), 4, 0.85)
    moved = cv2.warpAffine(lit, crop, (width, height), borderMode=cv2.BORDER_REFLECT)
    streak = np.eye(5, dtype=np.float32) / 5  # 5 px along the diagonal
    return _jpeg(cv2.filter2D(moved, -1, streak, borderType=cv2.BORDER_REFLECT), 40)


SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "lamp (test_calibration)": household_camera,
    "side light": side_light,
    "backlit, far": backlit_far,
}
"""The households the calibration's settings were chosen on (faces of the Training split)."""
HELD_OUT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "overhead, cold (held out)": overhead_cold
}
"""Households it never saw while its settings were chosen."""


def model_outputs(model: Path, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from device.classifier import EmotionClassifier

    classifier = EmotionClassifier(model)
    outputs = [classifier.predict(face) for face in faces]
    return np.stack([o.features for o in outputs]), np.stack([o.probabilities for o in outputs])


def readings(model: Path, faces: np.ndarray) -> Readings:
    """The model's outputs on faces as they are and denoised, as the device reads them."""
    from device.denoise import denoised

    return model_outputs(model, faces), model_outputs(model, np.stack([denoised(f) for f in faces]))


def split_faces(model: Path, data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """PublicTest (``test``), or of the Training split the faces the model held out for
    validation (``validation``, as its JSON's recipe says) or those it was fitted on
    (``train``), with their labels."""
    if split == "test":
        from training.data import load_folder

        test = load_folder(data / "test")
        return test.images, test.labels
    from training.train import training_split

    recipe = json.loads(model.with_suffix(".json").read_text())["recipe"]
    images, labels, fitted, held = training_split(
        data, None, 0, recipe["val_fraction"], recipe["seed"]
    )
    rows = held if split == "validation" else fitted
    return images[rows], labels[rows]


Outputs = tuple[np.ndarray, np.ndarray]  # features, probabilities
Readings = tuple[Outputs, Outputs]  # as they are, denoised


def gains(
    shifted: Readings,
    clean: Readings,
    labels: np.ndarray,
    draws: int,
    seed: int,
    settings: dict[str, Any],
) -> dict[str, float]:
    """One shift's accuracy gain (points) over `draws` taught sets, and the change on the same
    faces unshifted; `settings` go to `device.calibration.fit`. Also how many of the fitted
    calibrations read faces denoised."""
    from device.calibration import Samples, fit

    gained, unshifted, denoising = [], [], 0
    (features, probabilities), (denoised_features, denoised_probabilities) = shifted
    for draw in range(draws):
        draw_rng = np.random.default_rng([seed, draw])
        taught = np.zeros(len(labels), bool)
        for k in range(len(EMOTIONS)):
            taught[draw_rng.permutation(np.flatnonzero(labels == k))[:TAUGHT]] = True
        samples = Samples.of(
            features[taught],
            probabilities[taught],
            labels[taught],
            np.zeros(int(taught.sum())),
            (denoised_features[taught], denoised_probabilities[taught]),
        )
        calibration = fit(samples, len(EMOTIONS), **settings)
        denoising += calibration.denoise
        held = ~taught
        for (plain, cleaned), out in ((shifted, gained), (clean, unshifted)):
            read_features, read_probabilities = cleaned if calibration.denoise else plain
            after = calibration.logits(read_features[held], read_probabilities[held]).argmax(1)
            before = plain[1][held].argmax(axis=1)  # the shipped model reads faces as they are
            out.append(
                100 * float(np.mean(after == labels[held]) - np.mean(before == labels[held]))
            )
    return {
        "accuracy_before": round(100 * float(np.mean(probabilities.argmax(axis=1) == labels)), 1),
        "gain_mean": round(float(np.mean(gained)), 2),
        "gain_min": round(float(np.min(gained)), 2),
        "gain_max": round(float(np.max(gained)), 2),
        "unshifted_change_mean": round(float(np.mean(unshifted)), 2),
        "unshifted_change_min": round(float(np.min(unshifted)), 2),
        "draws_denoised": denoising,
    }


def tuning_grid(reference: object) -> dict[str, dict[str, Any]]:
    """The settings `--tune` compares: the logistic correction alone and after the
    standardisation (moment-matched, or refined with a penalty), each with its penalty and
    how far it reaches."""
    from device.calibration import Settings

    grid = {}
    for name, chosen, refinements in (
        ("plain", None, (None,)),
        ("standardised", reference, (None, 1.0, 3.0, 10.0)),
    ):
        for strength, quantile, fade, refinement in itertools.product(
            (2.0, 4.0, 6.0, 8.0, 12.0), (0.5, 0.65, 0.8), (0.5, 1.0), refinements
        ):
            refined = "" if refinement is None else f", refined {refinement:g}"
            label = f"{name}, strength {strength:g}, reach q{quantile:g}, fade {fade:g}{refined}"
            grid[label] = {
                "settings": Settings(strength, quantile, fade, refinement),
                "reference": chosen,
            }
    return grid


def measure(
    model: Path, data: Path, split: str, draws: int, seed: int, tune: bool = False
) -> dict[str, dict[str, Any]]:
    """Per shift, the figures of `gains` with the shipped settings; with `tune`, per setting
    of `tuning_grid`, on the tuned shifts only."""
    from device.calibration import load_reference

    images, labels = split_faces(model, data, split)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == k))[:PER_EMOTION] for k in range(len(EMOTIONS))]
    )
    faces, labels = images[chosen], labels[chosen]
    reference = load_reference(model)
    shifts = SHIFTS if tune else {**SHIFTS, **HELD_OUT}
    grid = tuning_grid(reference) if tune else {"shipped": {"reference": reference}}
    clean = readings(model, faces)
    shifted = {
        name: readings(model, np.stack([shift(f) for f in faces])) for name, shift in shifts.items()
    }
    return {
        setting: {
            name: gains(outputs, clean, labels, draws, seed, settings)
            for name, outputs in shifted.items()
        }
        for setting, settings in grid.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="the .tflite (its .json beside it)")
    p.add_argument("--data", required=True, type=Path, help="Kaggle root (train/ and test/)")
    p.add_argument("--split", choices=("test", "validation", "train"), default="test")
    p.add_argument("--tune", action="store_true", help="compare the settings of tuning_grid")
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out-dir", type=Path, default=None, help="also write household.json here")
    args = p.parse_args(argv)
    result = measure(args.model, args.data, args.split, args.draws, args.seed, args.tune)
    text = json.dumps(result if args.tune else result["shipped"], indent=2)
    print(text)
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "household.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
