"""Evaluate an int8 emotion model: ``python -m training.evaluate --model M --data DIR``.

``--data`` is a Kaggle-layout split folder (``<emotion>/*.jpg``), a Kaggle root (with
``--split``), or ``fer2013.csv``. Reports accuracy, macro-F1, per-class recall and a
confusion-matrix PNG against FER2013's labels and, where ``ferplus.csv`` lies in the dataset's
root, against the FER+ plurality; single-threaded latency per face in LiteRT and, given
``--float`` (a Keras checkpoint, needs TensorFlow), the float model's figures and how often it
agrees with the int8 one. ``--update-json`` writes the figures into the model's JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from training import EMOTIONS, ferplus
from training.data import describe, load_split

log = logging.getLogger(__name__)


class Int8Model:
    """The exported model on the device runtime, with its JSON's normalisation applied."""

    def __init__(self, path: Path | str, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        self.meta = json.loads(path.with_suffix(".json").read_text())
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        by_name = {d["name"]: d for d in self.interpreter.get_output_details()}
        self.scores = by_name[self.meta["outputs"]["scores"]]
        self.features = by_name[self.meta["outputs"]["features"]]

    def quantize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels ``[48, 48]`` to the int8 input tensor ``[1, 48, 48, 1]``."""
        norm = self.meta["normalization"]
        scale, zero_point = self.input["quantization"]
        x = pixels.astype(np.float32) * norm["scale"] + norm["offset"]
        q = np.round(x / scale + zero_point)
        return np.clip(q, -128, 127).astype(np.int8).reshape(self.input["shape"])

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``[7]`` and features for one face, dequantised to float."""
        self.interpreter.set_tensor(self.input["index"], self.quantize(pixels))
        self.interpreter.invoke()
        return self._read(self.scores)[0], self._read(self.features)[0]

    def _read(self, detail: dict[str, Any]) -> np.ndarray:
        scale, zero_point = detail["quantization"]
        raw = self.interpreter.get_tensor(detail["index"]).astype(np.float32)
        return (raw - zero_point) * scale

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self(image)[0] for image in images])


def float_predict(keras_path: Path | str, images: np.ndarray) -> np.ndarray:
    import keras

    from training.model import OFFSET, SCALE

    model = keras.models.load_model(keras_path)
    x = images[..., None].astype(np.float32) * SCALE + OFFSET
    return model.predict(x, batch_size=256, verbose=0)


def latency_ms(model: Int8Model, image: np.ndarray, runs: int = 300) -> dict[str, float]:
    """Median and 90th-percentile milliseconds per face (quantise, invoke, read scores)."""
    for _ in range(20):
        model(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(image)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "median": round(float(np.median(times)), 3),
        "p90": round(float(np.percentile(times, 90)), 3),
    }


def metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    n = len(EMOTIONS)
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    support = matrix.sum(axis=1)
    recall = np.diag(matrix) / np.maximum(support, 1)
    precision = np.diag(matrix) / np.maximum(matrix.sum(axis=0), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return {
        "images": len(labels),
        "accuracy": round(float(np.trace(matrix) / max(len(labels), 1)), 4),
        "macro_recall": round(float(recall.mean()), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "per_class_recall": {e: round(float(r), 4) for e, r in zip(EMOTIONS, recall, strict=True)},
        "confusion": matrix.tolist(),
    }


FERPLUS_NOTE = (
    "FER+ plurality of 10 taggers (ferplus.csv); faces whose plurality is contempt, unknown "
    "or not-a-face, or tied, left out"
)


def ferplus_labels(data: Path | str, split: str, names: tuple[str, ...]) -> np.ndarray | None:
    """The FER+ plurality label of each face of a split (``NOT_SCORED`` where it has none),
    or None when no ``ferplus.csv`` lies in the dataset's root."""
    data = Path(data)
    split_dir = data if all((data / e).is_dir() for e in EMOTIONS) else data / split
    try:
        csv_path = ferplus.find_csv(split_dir)
    except FileNotFoundError:
        return None
    prefix = split_dir.resolve().relative_to(csv_path.parent.resolve()).as_posix()
    votes = ferplus.votes_for(names, prefix, ferplus.read_votes(csv_path))
    return ferplus.plurality(votes)


def evaluate(
    model_path: Path | str,
    data: Path | str,
    split: str = "test",
    float_model: Path | str | None = None,
    out_dir: Path | str | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """All the figures for one model on one split; the confusion PNG goes to ``out_dir``."""
    from training.report import plot_confusion

    images = load_split(data, split, cache_dir)
    model = Int8Model(model_path)
    scores = model.predict(images.images)
    result: dict[str, Any] = {
        "data": describe(data),
        "int8": metrics(images.labels, scores.argmax(1)),
    }
    float_scores = None
    if float_model is not None:
        float_scores = float_predict(float_model, images.images)
        result["float"] = metrics(images.labels, float_scores.argmax(1))
        result["float_int8_agreement"] = round(
            float((float_scores.argmax(1) == scores.argmax(1)).mean()), 4
        )
    plurality = ferplus_labels(data, split, images.names)
    if plurality is not None:
        scored = plurality != ferplus.NOT_SCORED
        result["ferplus"] = {
            "labels": FERPLUS_NOTE,
            "int8": metrics(plurality[scored], scores[scored].argmax(1)),
        }
        if float_scores is not None:
            result["ferplus"]["float"] = metrics(plurality[scored], float_scores[scored].argmax(1))
    if len(images):
        result["latency_ms_single_thread"] = latency_ms(model, images.images[0])
    out_dir = Path(out_dir) if out_dir is not None else Path(model_path).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{Path(model_path).stem}_confusion.png"
    plot_confusion(
        np.array(result["int8"]["confusion"]),
        list(EMOTIONS),
        png,
        f"int8 on {result['data']}: accuracy {result['int8']['accuracy']:.1%}",
    )
    result["confusion_png"] = png.name
    if "ferplus" in result:
        png = out_dir / f"{Path(model_path).stem}_confusion_ferplus.png"
        figures = result["ferplus"]["int8"]
        plot_confusion(
            np.array(figures["confusion"]),
            list(EMOTIONS),
            png,
            f"int8 against FER+ plurality: accuracy {figures['accuracy']:.1%}",
        )
        result["ferplus"]["confusion_png"] = png.name
    return result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="the .tflite (its .json beside it)")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--split", default="test", help="for a Kaggle root or the CSV")
    p.add_argument("--float", type=Path, default=None, help="Keras checkpoint of the same model")
    p.add_argument("--out-dir", type=Path, default=None, help="for the confusion PNG")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--update-json", action="store_true", help="store the figures in the JSON")
    args = p.parse_args(argv)

    result = evaluate(args.model, args.data, args.split, args.float, args.out_dir, args.cache_dir)
    shown = {k: v for k, v in result.items() if k not in ("int8", "float", "ferplus")}
    for labels, figures in (("fer2013", result), ("ferplus", result.get("ferplus", {}))):
        for kind in ("int8", "float"):
            if kind in figures:
                shown[f"{labels} {kind}"] = {
                    k: v for k, v in figures[kind].items() if k != "confusion"
                }
    print(json.dumps(shown, indent=2))
    if args.update_json:
        from training.export import write_json

        json_path = args.model.with_suffix(".json")
        document = json.loads(json_path.read_text())
        document["evaluation"] = result
        write_json(json_path, document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
