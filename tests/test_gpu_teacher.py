"""The GPU teacher (training.gpu_teacher), run here on the CPU: the packed faces decode to the
loaders' pixels, and a run keeps to its time budget and writes a teacher file for every face."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from training import EMOTIONS, ferplus, gpu_teacher, teachers
from training.data import load_split

pytestmark = pytest.mark.training  # PyTorch, the torch extra


@pytest.fixture
def packed(dataset: Path, tmp_path: Path) -> Path:
    names, _, labels = teachers.faces(dataset)
    with (dataset / ferplus.FILE_NAME).open("w") as f:  # 10 votes for each face's label
        f.write(",".join(["file", *ferplus.COLUMNS]) + "\n")
        for name, label in zip(names, labels, strict=True):
            votes = np.zeros(len(ferplus.COLUMNS), int)
            votes[ferplus._column_order()[label]] = 10
            f.write(",".join([name, *map(str, votes)]) + "\n")
    out = tmp_path / "faces.npz"
    gpu_teacher.pack(dataset, out)
    return out


def test_packed_faces_decode_to_the_loaders_pixels(packed: Path, dataset: Path) -> None:
    """The GPU machine has no ../shared: it must train on the same faces, labels and votes."""
    faces = gpu_teacher.unpack(packed)
    train, test = load_split(dataset, "train"), load_split(dataset, "test")
    np.testing.assert_array_equal(faces["images"], np.concatenate([train.images, test.images]))
    np.testing.assert_array_equal(faces["labels"], np.concatenate([train.labels, test.labels]))
    assert faces["names"][0] == f"train/{train.names[0]}"
    assert (ferplus.plurality(faces["votes"]) == faces["labels"]).all()


def test_the_learning_rate_warms_up_then_decays_to_zero_at_the_budget() -> None:
    lr = [gpu_teacher.cosine_lr(t, 100, 0.1, 10) for t in (0, 10, 55, 99.9, 100, 120)]
    assert lr[0] == pytest.approx(0.01) and lr[1] == pytest.approx(0.1)
    assert lr[1] > lr[2] > lr[3] > 0 and lr[4] == lr[5] == 0


def test_augmentation_keeps_faces_in_range_and_is_seeded() -> None:
    x = torch.linspace(-1, 1, 48 * 48).reshape(1, 1, 48, 48).repeat(8, 1, 1, 1)
    a = gpu_teacher.augment(x, torch.Generator().manual_seed(3))
    b = gpu_teacher.augment(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1])  # each face its own warp


def test_a_run_keeps_to_its_budget_and_scores_every_face(packed: Path, tmp_path: Path) -> None:
    """With no epoch limit, the budget alone ends the run; the teacher file covers Training
    and PublicTest and reads like the other teachers'."""
    torch.set_num_threads(1)
    out = tmp_path / "out"
    started = time.monotonic()
    budget = ["--budget-s", "8", "--reserve-s", "2", "--warmup-s", "1"]
    small = ["--width", "4", "--batch-size", "32"]
    gpu_teacher.main(["train", "--faces", str(packed), "--out", str(out), *budget, *small])
    assert time.monotonic() - started < 30
    record = json.loads((out / f"{gpu_teacher.NAME}.json").read_text())
    assert record["epochs"] >= 1 and record["history"][-1]["seconds"] < 8
    names = gpu_teacher.unpack(packed)["names"]
    scores = teachers.load(out / f"{gpu_teacher.NAME}.npz", names)
    assert scores.shape == (len(names), len(EMOTIONS))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=0.01)
    assert record["publictest"]["ferplus"]["images"] == 6 * len(EMOTIONS)
