"""FER2013 loaders for the Kaggle folder layout and the original CSV, with an on-disk cache.

Both forms decode to ``(images, labels)``: ``uint8 [N, 48, 48]`` grayscale and ``int64 [N]``
in FER2013's label order (:data:`training.EMOTIONS`).

Decoding 32k JPEGs takes a while on a Pi-class desktop, so the result is cached as an ``.npz``.
The data folder may be read-only (the shared copy is), so the cache lives in a cache directory
instead of beside the data: ``$MOODMELODY_CACHE`` if set, else ``~/.cache/moodmelody/``, or the
``cache_dir`` argument. A cache file is named by the source (its resolved path) and keyed by a
hash of its file list (relative names, sizes and modification times), so adding, removing or
touching a file invalidates it; the new decode then replaces the source's stale cache file.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training import EMOTIONS

log = logging.getLogger(__name__)

IMAGE_SIZE = 48
CSV_NAME = "fer2013.csv"
# The CSV's Usage column and the Kaggle folder names, as one vocabulary of split names.
CSV_SPLITS = {"Training": "train", "PublicTest": "test", "PrivateTest": "private"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class Split:
    """Decoded images of one split, with the source names of its images (for tracing)."""

    images: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray  # int64 [N]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def default_cache_dir() -> Path:
    return Path(os.environ.get("MOODMELODY_CACHE", Path.home() / ".cache" / "moodmelody"))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_name(source: Path, files: list[Path]) -> tuple[str, str]:
    """``(stem, key)``: the stem names the source (a folder or the CSV), the key its files."""
    root = source if source.is_dir() else source.parent
    listing = []
    for path in files:
        stat = path.stat()
        listing.append(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
    return f"fer2013-{_short_hash(str(source.resolve()))}", _short_hash("".join(listing))


def _cached(name: tuple[str, str], cache_dir: Path | None, decode) -> dict[str, np.ndarray]:
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem, key = name
    path = cache_dir / f"{stem}-{key}.npz"
    if path.exists():
        log.info("loading cached decode %s", path)
        with np.load(path) as cached:
            return dict(cached)
    arrays = decode()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    for stale in cache_dir.glob(f"{stem}-*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)
    log.info("cached decode to %s", path)
    return arrays


def _folder_files(split_dir: Path) -> list[tuple[Path, int]]:
    files = []
    for label, emotion in enumerate(EMOTIONS):
        class_dir = split_dir / emotion
        if not class_dir.is_dir():
            raise FileNotFoundError(f"missing class folder {class_dir}")
        files += [
            (p, label) for p in sorted(class_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
        ]
    return files


def _decode_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
        image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return image


def load_folder(split_dir: Path | str, cache_dir: Path | None = None) -> Split:
    """Load one Kaggle-layout split folder (``<split_dir>/<emotion>/*.jpg``)."""
    split_dir = Path(split_dir)
    files = _folder_files(split_dir)
    names = tuple(str(p.relative_to(split_dir)) for p, _ in files)

    def decode() -> dict[str, np.ndarray]:
        log.info("decoding %d images under %s", len(files), split_dir)
        images = np.stack([_decode_image(p) for p, _ in files]) if files else _empty()
        return {"images": images, "labels": np.array([lab for _, lab in files], np.int64)}

    arrays = _cached(_cache_name(split_dir, [p for p, _ in files]), cache_dir, decode)
    return Split(arrays["images"], arrays["labels"], names)


def _empty() -> np.ndarray:
    return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def load_csv(csv_path: Path | str, cache_dir: Path | None = None) -> dict[str, Split]:
    """Load ``fer2013.csv`` (``emotion,pixels,Usage``) into splits named train, test, private."""
    csv_path = Path(csv_path)

    def decode() -> dict[str, np.ndarray]:
        log.info("decoding %s", csv_path)
        rows: dict[str, tuple[list, list]] = {name: ([], []) for name in CSV_SPLITS.values()}
        with csv_path.open(newline="") as f:
            for row in csv.DictReader(f):
                pixels = np.array(row["pixels"].split(), np.uint8)
                images, labels = rows[CSV_SPLITS[row["Usage"].strip()]]
                images.append(pixels.reshape(IMAGE_SIZE, IMAGE_SIZE))
                labels.append(int(row["emotion"]))
        arrays = {}
        for name, (images, labels) in rows.items():
            arrays[f"{name}_images"] = np.stack(images) if images else _empty()
            arrays[f"{name}_labels"] = np.array(labels, np.int64)
        return arrays

    arrays = _cached(_cache_name(csv_path, [csv_path]), cache_dir, decode)
    return {
        name: Split(
            arrays[f"{name}_images"],
            arrays[f"{name}_labels"],
            tuple(f"{csv_path.name}:{name}:{i}" for i in range(len(arrays[f"{name}_labels"]))),
        )
        for name in CSV_SPLITS.values()
    }


def load_split(data: Path | str, split: str, cache_dir: Path | None = None) -> Split:
    """Load split ``train``/``test``/``private`` of a dataset given in any supported form.

    ``data`` may be a ``fer2013.csv`` file, a folder holding one, a Kaggle-layout root
    (``train/`` and ``test/``), or a single split folder (``<emotion>/`` subfolders), in which
    case ``split`` is ignored.
    """
    data = Path(data)
    if data.is_file():
        return load_csv(data, cache_dir)[split]
    if (data / CSV_NAME).is_file() and not (data / split).is_dir():
        return load_csv(data / CSV_NAME, cache_dir)[split]
    if all((data / emotion).is_dir() for emotion in EMOTIONS):
        return load_folder(data, cache_dir)
    return load_folder(data / split, cache_dir)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)`` with ``fraction`` of every class held out, seeded."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_held = round(len(idx) * fraction)
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Square-root inverse-frequency weights, scaled so the mean weight per sample is 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    return (weights / (weights[labels].mean())).astype(np.float32)


def describe(data: Path | str) -> str:
    """A short, machine-independent description of the data source (for the model's JSON)."""
    data = Path(data).resolve()
    return f"{data.parent.name}/{data.name}"
