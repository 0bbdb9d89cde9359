"""The emotion model's contract with training: metadata, quantisation, outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from device import EMOTIONS
from device.classifier import EmotionClassifier, ModelError
from device.config import Config

SHIPPED = Config().model_path("emotion")


def copy_model(tmp_path: Path, **changes: object) -> Path:
    model = tmp_path / "emotion_int8.tflite"
    shutil.copy(SHIPPED, model)
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    meta.update(changes)
    model.with_suffix(".json").write_text(json.dumps(meta))
    return model


def test_the_shipped_model_gives_probabilities_and_features() -> None:
    classifier = EmotionClassifier(SHIPPED)
    assert classifier.labels == EMOTIONS
    assert classifier.input_size == (48, 48)
    face = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    prediction = classifier.predict(face)
    assert prediction.probabilities.shape == (7,)
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-6)
    assert prediction.features is not None and prediction.features.ndim == 1


def test_missing_metadata_names_the_file(tmp_path: Path) -> None:
    model = tmp_path / "emotion_int8.tflite"
    shutil.copy(SHIPPED, model)
    with pytest.raises(ModelError, match=r"emotion_int8\.json: metadata file missing"):
        EmotionClassifier(model)


def test_labels_that_do_not_match_the_outputs_are_refused(tmp_path: Path) -> None:
    model = copy_model(tmp_path, labels=["happy", "sad"], outputs={})
    with pytest.raises(ModelError, match="no output has 2 values"):
        EmotionClassifier(model)


def test_normalisation_is_applied_before_quantisation(tmp_path: Path) -> None:
    """A model told that every pixel maps to the same value sees the same input for any face."""
    model = copy_model(tmp_path, normalization={"scale": 0.0, "offset": 0.0})
    classifier = EmotionClassifier(model)
    rng = np.random.default_rng(1)
    first, second = (
        classifier.predict(rng.integers(0, 256, (48, 48), dtype=np.uint8)) for _ in range(2)
    )
    assert np.array_equal(first.probabilities, second.probabilities)
