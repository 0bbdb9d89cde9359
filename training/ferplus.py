"""FER+ votes (``fer2013/ferplus.csv``, Barsoum et al. 2016) for the FER2013 faces: soft
training targets that mix them with FER2013's label, and the plurality labels scored against.

Each face has the votes of 10 taggers over neutral, happiness, surprise, sadness, anger,
disgust, fear, contempt, unknown and NF (not a face). Contempt has no FER2013 class, so the
targets use the seven shared emotions only; a face FER+ calls not-a-face (NF the plurality),
or one without votes, keeps FER2013's one-hot label alone. The plurality label, as in the
literature, leaves out faces whose plurality is contempt, unknown or NF, and ties.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from training import EMOTIONS

FILE_NAME = "ferplus.csv"
# ferplus.csv's columns, in its order, and the FER2013 emotion each stands for (None: no class).
COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
OURS = {"happiness": "happy", "sadness": "sad", "anger": "angry"}
NOT_SCORED = -1  # plurality label of a face left out of the FER+ scores


def _column_order() -> np.ndarray:
    """For each of our EMOTIONS, its column in :data:`COLUMNS`."""
    names = [OURS.get(c, c) for c in COLUMNS]
    return np.array([names.index(e) for e in EMOTIONS])


def find_csv(data: Path | str) -> Path:
    """``ferplus.csv`` in a Kaggle root or beside a split folder given as ``data``."""
    data = Path(data)
    for folder in (data, data.parent):
        if (folder / FILE_NAME).is_file():
            return folder / FILE_NAME
    raise FileNotFoundError(f"no {FILE_NAME} in {data} or {data.parent}")


def read_votes(csv_path: Path | str) -> dict[str, np.ndarray]:
    """``{file: votes[10]}`` (``file`` relative to the Kaggle root); rows without votes skipped."""
    votes = {}
    with Path(csv_path).open(newline="") as f:
        for row in csv.DictReader(f):
            if any(row[c] == "" for c in COLUMNS):
                continue
            votes[row["file"]] = np.array([float(row[c]) for c in COLUMNS], np.float32)
    return votes


def votes_for(names: tuple[str, ...], split: str, votes: dict[str, np.ndarray]) -> np.ndarray:
    """Votes ``[N, 10]`` for a split's faces (``names`` as in :class:`training.data.Split`,
    relative to the split folder ``split``, or to the Kaggle root where ``split`` is empty);
    all zeros for a face without votes."""
    out = np.zeros((len(names), len(COLUMNS)), np.float32)
    for i, name in enumerate(names):
        row = votes.get(f"{split}/{name}" if split else name)
        if row is not None:
            out[i] = row
    return out


def distribution(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vote distribution over our EMOTIONS ``[N, 7]`` and whether each face has one
    (some emotion votes and NF not the plurality)."""
    emotion = votes[:, _column_order()]
    total = emotion.sum(axis=1)
    nf = votes[:, COLUMNS.index("NF")]
    usable = (total > 0) & (nf < votes.max(axis=1))  # NF the (shared) plurality: not a face
    dist = np.where(usable[:, None], emotion / np.maximum(total, 1)[:, None], 0.0)
    return dist.astype(np.float32), usable


def mixed_targets(labels: np.ndarray, votes: np.ndarray, fer2013_weight: float) -> np.ndarray:
    """``λ · one-hot(FER2013 label) + (1 − λ) · FER+ vote distribution`` per face, with
    ``λ = fer2013_weight``; the one-hot label alone where FER+ gives no distribution."""
    one_hot = np.eye(len(EMOTIONS), dtype=np.float32)[labels]
    dist, usable = distribution(votes)
    mixed = fer2013_weight * one_hot + (1 - fer2013_weight) * dist
    return np.where(usable[:, None], mixed, one_hot).astype(np.float32)


def plurality(votes: np.ndarray) -> np.ndarray:
    """The FER+ plurality label of each face in our EMOTIONS order, or :data:`NOT_SCORED`
    where it is contempt, unknown or NF, is tied, or the face has no votes."""
    top = votes.max(axis=1)
    winners = (votes == top[:, None]).sum(axis=1)
    column = votes.argmax(axis=1)
    to_ours = np.full(len(COLUMNS), NOT_SCORED)
    to_ours[_column_order()] = np.arange(len(EMOTIONS))
    label = to_ours[column]
    return np.where((winners == 1) & (top > 0), label, NOT_SCORED).astype(np.int64)
