"""FER+ votes: the mixed training targets, the plurality labels scored against, and the join
of ``ferplus.csv`` with the loaders' face names."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from training import EMOTIONS, ferplus
from training.data import load_split

# Vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
NEUTRAL_8 = [8, 0, 0, 1, 1, 0, 0, 0, 0, 0]
ANGER_6 = [3, 0, 0, 0, 6, 1, 0, 0, 0, 0]
NOT_A_FACE = [1, 0, 0, 0, 0, 0, 0, 0, 0, 9]
TIED = [4, 4, 0, 0, 0, 0, 0, 0, 0, 2]
CONTEMPT = [2, 0, 0, 0, 0, 0, 0, 5, 3, 0]
NO_VOTES = [0] * 10


def _index(emotion: str) -> int:
    return EMOTIONS.index(emotion)


def test_targets_mix_the_fer2013_label_with_the_vote_distribution() -> None:
    """λ = 1 is FER2013 alone, λ = 0 the votes alone; contempt, unknown and NF votes are not
    emotions of ours and do not enter the distribution."""
    votes = np.array([NEUTRAL_8, ANGER_6, CONTEMPT], np.float32)
    labels = np.array([_index("sad"), _index("angry"), _index("happy")])
    np.testing.assert_array_equal(ferplus.mixed_targets(labels, votes, 1.0), np.eye(7)[labels])

    pure = ferplus.mixed_targets(labels, votes, 0.0)
    np.testing.assert_allclose(pure.sum(axis=1), 1.0, rtol=1e-6)
    assert pure[0, _index("neutral")] == pytest.approx(0.8)
    assert pure[0, _index("sad")] == pytest.approx(0.1)
    assert pure[1, _index("angry")] == pytest.approx(0.6)
    assert pure[1, _index("disgust")] == pytest.approx(0.1)
    assert pure[2, _index("neutral")] == pytest.approx(1.0), "contempt and unknown left out"

    quarter = ferplus.mixed_targets(labels, votes, 0.25)
    assert quarter[0, _index("sad")] == pytest.approx(0.25 + 0.75 * 0.1)
    assert quarter[0, _index("neutral")] == pytest.approx(0.75 * 0.8)


def test_a_face_fer_plus_calls_not_a_face_keeps_its_fer2013_label_alone() -> None:
    votes = np.array([NOT_A_FACE, NO_VOTES], np.float32)
    labels = np.array([_index("fear"), _index("happy")])
    np.testing.assert_array_equal(ferplus.mixed_targets(labels, votes, 0.0), np.eye(7)[labels])


def test_the_plurality_leaves_out_ties_contempt_unknown_and_not_a_face() -> None:
    votes = np.array([NEUTRAL_8, ANGER_6, NOT_A_FACE, TIED, CONTEMPT, NO_VOTES], np.float32)
    expected = [_index("neutral"), _index("angry")] + [ferplus.NOT_SCORED] * 4
    np.testing.assert_array_equal(ferplus.plurality(votes), expected)


def _write_votes(root: Path, rows: dict[str, list[int]]) -> None:
    with (root / ferplus.FILE_NAME).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *ferplus.COLUMNS])
        writer.writerows([name, *votes] for name, votes in rows.items())
        writer.writerow(["", *[""] * len(ferplus.COLUMNS)])  # a vote row FER+ could not join


def test_evaluation_joins_the_votes_to_the_faces_of_a_split_folder(dataset: Path) -> None:
    """``make evaluate`` passes the split folder, the training the Kaggle root: both find
    ``ferplus.csv`` in the root and match its ``test/<emotion>/<file>`` names."""
    from training.evaluate import ferplus_labels

    test = load_split(dataset, "test")
    first, second = test.names[0], test.names[-1]
    _write_votes(dataset, {f"test/{first}": ANGER_6, f"test/{second}": TIED})
    for data in (dataset, dataset / "test"):
        labels = ferplus_labels(data, "test", test.names)
        assert labels is not None and len(labels) == len(test)
        assert labels[0] == _index("angry")
        assert (labels[1:] == ferplus.NOT_SCORED).all()


def test_training_targets_follow_the_votes_row_for_row(dataset: Path) -> None:
    from training.train import base_targets, training_split

    train = load_split(dataset, "train")
    name = train.names[3]
    _write_votes(dataset, {f"train/{name}": NEUTRAL_8})
    assert base_targets(dataset, None, 0, 1234, 1.0) is None
    targets = base_targets(dataset, None, 0, 1234, 0.5)
    _, labels, _, _ = training_split(dataset, None, 0, 0.1, 1234)
    assert targets.shape == (len(labels), 7)
    assert targets[3, _index("neutral")] == pytest.approx(0.4)
    others = np.delete(np.arange(len(labels)), 3)
    np.testing.assert_array_equal(targets[others], np.eye(7)[labels[others]])
