"""Emotion classification of a face crop with the int8 model and its JSON metadata.

The contract with training/ is models/emotion_int8.json beside the model:
`labels` in output order; `normalization` {scale, offset} meaning
float_input = pixel * scale + offset (pixel 0..255), quantised with the input
tensor's own parameters when the input is integer; `input_size` [h, w]; `output`
"probabilities" or "logits"; optionally `outputs` {"scores": name, "features": name}
naming the tensors when the model also exports its penultimate features.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.runtime import load_interpreter

logger = logging.getLogger(__name__)


class ModelError(ValueError):
    """The model or its metadata does not honour the contract above."""


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # one per label, summing to 1
    features: np.ndarray | None  # penultimate-layer features, when the model exports them
    denoised: Prediction | None = None
    """The same face read after `device.denoise` (set by `device.pipeline.Analyser`)."""


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def metadata_path(model: Path) -> Path:
    return model.with_suffix(".json")


class EmotionClassifier:
    def __init__(self, model: Path, threads: int = 1) -> None:
        meta_file = metadata_path(model)
        try:
            self.metadata: dict[str, Any] = json.loads(meta_file.read_text())
            self.labels: tuple[str, ...] = tuple(self.metadata["labels"])
            norm = self.metadata["normalization"]
            self._pixel_scale = float(norm["scale"])
            self._pixel_offset = float(norm["offset"])
        except FileNotFoundError as err:
            raise ModelError(f"{meta_file}: metadata file missing") from err
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{meta_file}: bad or missing key: {err}") from err
        self._logits = self.metadata.get("output", "probabilities") == "logits"
        self._interpreter = load_interpreter(model, threads)
        self._input = self._interpreter.get_input_details()[0]
        _, height, width, _ = self._input["shape"]
        self.input_size = (int(width), int(height))  # as cv2 wants it
        self._scores, self._features = self._find_outputs(meta_file)

    def _find_outputs(self, meta_file: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
        details = self._interpreter.get_output_details()
        named = self.metadata.get("outputs", {})
        by_name = {d["name"]: d for d in details}
        scores = by_name.get(named.get("scores", ""))
        features = by_name.get(named.get("features", ""))
        if scores is None:  # no names recorded: the scores are the output with one per label
            matching = [d for d in details if d["shape"][-1] == len(self.labels)]
            if not matching:
                raise ModelError(f"{meta_file}: no output has {len(self.labels)} values (labels)")
            scores = matching[0]
            others = [d for d in details if d is not scores]
            features = features or (others[0] if others else None)
        if scores["shape"][-1] != len(self.labels):
            raise ModelError(
                f"{meta_file}: {len(self.labels)} labels but the scores output "
                f"has {scores['shape'][-1]} values"
            )
        return scores, features

    @property
    def has_features(self) -> bool:
        return self._features is not None

    def _read(self, detail: dict[str, Any]) -> np.ndarray:
        raw = self._interpreter.get_tensor(detail["index"])[0]
        scale, zero_point = detail["quantization"]
        if scale:
            return (raw.astype(np.float32) - zero_point) * scale
        return raw.astype(np.float32)

    def input_tensor(self, face: np.ndarray) -> np.ndarray:
        """The model input for a grayscale crop (uint8) already resized to `input_size`:
        normalised as the JSON says, then quantised with the input tensor's parameters."""
        values = face.astype(np.float32) * self._pixel_scale + self._pixel_offset
        dtype = self._input["dtype"]
        scale, zero_point = self._input["quantization"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            values = np.clip(np.round(values / scale + zero_point), info.min, info.max)
        return values.astype(dtype).reshape(self._input["shape"])

    def predict(self, face: np.ndarray) -> Prediction:
        """Classify a grayscale crop (uint8) already resized to `input_size`."""
        self._interpreter.set_tensor(self._input["index"], self.input_tensor(face))
        self._interpreter.invoke()
        scores = self._read(self._scores)
        probabilities = _softmax(scores) if self._logits else scores / max(scores.sum(), 1e-9)
        features = self._read(self._features) if self._features is not None else None
        return Prediction(probabilities, features)

    def describe(self) -> str:
        evaluation = self.metadata.get("evaluation", {})
        figures = [
            f"{accuracy:.1%} {labels}"
            for accuracy, labels in (
                (evaluation.get("ferplus", {}).get("int8", {}).get("accuracy"), "FER+"),
                (evaluation.get("int8", {}).get("accuracy"), "FER2013"),
            )
            if isinstance(accuracy, float)
        ]
        figure = f", {' / '.join(figures)} on PublicTest" if figures else ""
        return f"{len(self.labels)} emotions at {self.input_size[0]}×{self.input_size[1]}{figure}"
