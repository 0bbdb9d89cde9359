"""Full-integer (int8) TFLite export with two outputs, its JSON sidecar and the classifier head."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training import EMOTIONS
from training.model import INPUT_SHAPE, LOGITS_LAYER, OFFSET, SCALE, with_features

log = logging.getLogger(__name__)


def representative_rows(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Rows of up to ``count`` training images, drawn evenly across classes (seeded)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, count // len(classes))
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(picks))


def to_tflite(model: keras.Model, representative: np.ndarray) -> bytes:
    """Convert to int8 weights and activations with int8 input and outputs.

    The converted model takes ``[1, 48, 48, 1]`` int8 (the normalised pixel quantised with the
    input tensor's own parameters) and returns int8 ``scores`` [1, 7] and ``features``.
    """
    two_outputs = with_features(model)

    def samples():
        for image in representative:
            yield [(image[None, :, :, None].astype(np.float32) * SCALE + OFFSET)]

    converter = tf.lite.TFLiteConverter.from_keras_model(two_outputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # The input's int8 parameters come from the representative data, as intended.
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return converter.convert()


def output_map(tflite_path: Path | str, feature_size: int) -> dict[str, dict[str, Any]]:
    """Which output tensor is which, found by shape (the converter may reorder outputs)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    found = {}
    for position, detail in enumerate(interpreter.get_output_details()):
        width = int(detail["shape"][-1])
        role = "scores" if width == len(EMOTIONS) else "features" if width == feature_size else None
        if role is None or role in found:
            raise ValueError(f"cannot tell the outputs apart: {detail['name']} {detail['shape']}")
        scale, zero_point = detail["quantization"]
        found[role] = {
            "index": int(detail["index"]),
            "position": position,
            "name": detail["name"],
            "shape": [int(s) for s in detail["shape"]],
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)},
        }
    if set(found) != {"scores", "features"}:
        raise ValueError(f"expected scores and features outputs, found {sorted(found)}")
    return found


def reference_statistics(
    tflite_path: Path, images: np.ndarray, labels: np.ndarray
) -> dict[str, np.ndarray]:
    """Per emotion, the mean and variance of the int8 model's features on ``images``: what the
    household calibration standardises to (``device.calibration.Reference``)."""
    from device.classifier import EmotionClassifier

    classifier = EmotionClassifier(tflite_path)
    features = np.stack([classifier.predict(image).features for image in images])
    rows = [features[labels == c] for c in range(len(EMOTIONS))]
    return {
        "class_means": np.stack([row.mean(axis=0) for row in rows]).astype(np.float32),
        "class_variances": np.stack([row.var(axis=0) for row in rows]).astype(np.float32),
    }


def write_head(head_path: Path, kernel: np.ndarray, bias: np.ndarray, statistics: dict) -> None:
    np.savez(head_path, W=kernel, b=bias, labels=np.array(EMOTIONS), **statistics)


def export(
    model: keras.Model,
    representative: np.ndarray,
    representative_labels: np.ndarray,
    out_stem: Path | str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Write ``<stem>.tflite``, ``<stem>.json`` and ``emotion_head.npz`` beside them; the head
    file also holds the features' statistics on the representative faces.

    Returns the JSON document (``metadata`` merged with what the runtime needs).
    """
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    tflite_path = out_stem.with_suffix(".tflite")
    tflite_path.write_bytes(to_tflite(model, representative))

    feature_size = int(model.get_layer(LOGITS_LAYER).kernel.shape[0])
    outputs = output_map(tflite_path, feature_size)
    kernel, bias = (np.asarray(w, np.float32) for w in model.get_layer(LOGITS_LAYER).get_weights())
    head_path = out_stem.parent / "emotion_head.npz"

    document = {
        "labels": list(EMOTIONS),
        "normalization": {"scale": SCALE, "offset": OFFSET},
        "input_size": list(INPUT_SHAPE[:2]),
        "input_channels": INPUT_SHAPE[2],
        "input_dtype": "int8",
        "output": "probabilities",
        "outputs": {
            "scores": outputs["scores"]["name"],
            "features": outputs["features"]["name"],
            "tensors": outputs,
        },
        "feature_size": feature_size,
        "head": {
            "file": head_path.name,
            "W_shape": list(kernel.shape),
            "b_shape": list(bias.shape),
            "note": "scores = softmax(features @ W + b), float; class_means and "
            "class_variances [7, F]: the int8 features per emotion on the representative faces",
        },
        "size_bytes": tflite_path.stat().st_size,
        **metadata,
    }
    write_json(out_stem.with_suffix(".json"), document)
    statistics = reference_statistics(tflite_path, representative, representative_labels)
    write_head(head_path, kernel, bias, statistics)
    log.info("exported %s (%d bytes)", tflite_path, document["size_bytes"])
    return document


def write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)


def add_reference(model: Path, data: Path) -> Path:
    """Add the features' statistics to the head file of a model exported before they were
    recorded, from its own representative faces (rebuilt from its JSON's recipe)."""
    from training.train import training_split

    meta = json.loads(model.with_suffix(".json").read_text())
    recipe = meta["recipe"]
    images, labels, fit_idx, _ = training_split(
        data, None, 0, recipe["val_fraction"], recipe["seed"]
    )
    images, labels = images[fit_idx], labels[fit_idx]
    rows = representative_rows(labels, meta["training"]["representative_images"], recipe["seed"])
    head_path = model.parent / meta["head"]["file"]
    with np.load(head_path) as head:
        kernel, bias = head["W"], head["b"]
    write_head(head_path, kernel, bias, reference_statistics(model, images[rows], labels[rows]))
    return head_path


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=add_reference.__doc__.split(",")[0])
    p.add_argument("--model", required=True, type=Path, help="the .tflite (its .json beside it)")
    p.add_argument("--data", required=True, type=Path, help="the dataset it was trained on")
    args = p.parse_args(argv)
    print(add_reference(args.model, args.data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
