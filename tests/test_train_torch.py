"""The GPU path: host-made batches and the PyTorch trainer, checked against the Keras recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training import EMOTIONS
from training.host_pipeline import augment, train_batches
from training.train import RECIPE_DEFAULTS

pytestmark = pytest.mark.training


def _face() -> np.ndarray:
    """A lopsided face: a bright block left of centre on a mid-grey ground."""
    face = np.full((48, 48), 100, np.uint8)
    face[12:36, 6:20] = 230
    return face


def test_host_batches_depend_only_on_seed_epoch_and_step() -> None:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (100, 48, 48), np.uint8)
    targets = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 100)]
    weights = rng.uniform(0.5, 2, 100).astype(np.float32)

    def first(n, **kwargs):
        batches, steps = train_batches(faces, targets, weights, 32, seed=5, **kwargs)
        return steps, [next(batches) for _ in range(n)]

    steps, run = first(6, workers=3)
    assert steps == 3
    _, again = first(6, workers=1)
    _, resumed = first(3, start_epoch=1)
    for made, remade in zip(run, again, strict=True):
        for a, b in zip(made, remade, strict=True):
            np.testing.assert_array_equal(a, b)
    for made, remade in zip(run[3:], resumed, strict=True):
        np.testing.assert_array_equal(made[0], remade[0])
    x, y, w = run[0]
    assert x.shape == (32, 48, 48, 1) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert y.shape == (32, 7) and w.shape == (32,)
    assert not np.array_equal(run[0][0], run[3][0]), "each epoch draws afresh"


def test_host_augmentation_draws_what_the_tensorflow_pipeline_draws() -> None:
    """The mean and spread over many draws of one face agree with TensorFlow's augmentation:
    same flips, rotations, shifts, light and erasing, in the same pixel convention."""
    tf = pytest.importorskip("tensorflow")
    from training import pipeline

    faces = np.repeat(_face()[None], 2000, axis=0)
    ours = augment(faces, np.random.default_rng(1))
    theirs = pipeline.augment(tf.constant(faces[..., None], tf.float32), tf.constant([1, 2]))
    theirs = theirs.numpy()[..., 0]
    assert np.abs(ours.mean(axis=0) - theirs.mean(axis=0)).mean() < 2.0
    assert np.abs(ours.std(axis=0) - theirs.std(axis=0)).mean() < 1.5
    # Half are mirrored: the bright block is left of centre in about half of the draws.
    left = ours[:, 12:36, 6:20].mean(axis=(1, 2)) > ours[:, 12:36, 28:42].mean(axis=(1, 2))
    assert 0.45 < left.mean() < 0.55
    # The tolerances are tight: the mean draw is far from the face itself (and shifts of 8 px
    # or rotations of 30° instead of 4 px and 10° move it by 9 and 7 grey levels).
    assert np.abs(ours.mean(axis=0) - faces[0]).mean() > 10


def test_sensor_noise_goes_on_half_the_faces_in_both_pipelines() -> None:
    """`noise` (a recipe key) grains about half the faces, alike in TensorFlow's and the host's
    augmentation; without it a flat face stays flat except where an erased patch ends."""
    tf = pytest.importorskip("tensorflow")
    from training import pipeline

    faces = np.full((2000, 48, 48), 128, np.uint8)

    def grained(x: np.ndarray) -> np.ndarray:
        """Per face, whether its centre changes from pixel to pixel by over a grey level."""
        return np.abs(np.diff(x[:, 18:30, 18:30], axis=2)).mean(axis=(1, 2)) > 1.0

    for noise in (0.0, 12.0):
        ours = grained(augment(faces, np.random.default_rng(1), noise))
        theirs = pipeline.augment(
            tf.constant(faces[..., None], tf.float32), tf.constant([1, 2]), noise
        )
        theirs = grained(theirs.numpy()[..., 0])
        assert abs(ours.mean() - theirs.mean()) < 0.05
        if noise:
            assert 0.45 < ours.mean() < 0.65
        else:
            assert ours.mean() < 0.25


def test_torch_schedule_and_loss_are_the_keras_ones() -> None:
    torch = pytest.importorskip("torch")
    import keras

    from training.train import build_compiled
    from training.train_torch import learning_rate, soft_cross_entropy

    recipe = {**RECIPE_DEFAULTS, "epochs": 4, "warmup_epochs": 1}
    schedule = build_compiled(recipe, steps_per_epoch=10).optimizer._learning_rate
    for step in (0, 3, 10, 17, 39, 40):
        assert learning_rate(step, recipe, 10) == pytest.approx(float(schedule(step)), rel=1e-5)

    rng = np.random.default_rng(2)
    logits = rng.normal(size=(16, 7)).astype(np.float32)
    targets = rng.dirichlet(np.ones(7), 16).astype(np.float32)
    weights = rng.uniform(0.5, 2, 16).astype(np.float32)
    keras_loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(
        targets, keras.ops.softmax(logits), sample_weight=weights
    )
    ours = soft_cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(targets), torch.from_numpy(weights), 0.1
    )
    assert float(ours) == pytest.approx(float(keras_loss), rel=1e-4)


@pytest.mark.slow
def test_a_torch_run_exports_like_a_keras_run(dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    import keras

    from training import evaluate, train, train_torch
    from training.data import load_split
    from training.pipeline import normalize

    run, stem = tmp_path / "run", tmp_path / "models" / "emotion_int8"
    common = ["--data", str(dataset), "--run", str(run)]
    recipe = ["--epochs", "2", "--batch-size", "32", "--widths", "8", "8", "16", "16"]
    recipe += ["--grid", "3"]
    with pytest.raises(SystemExit, match="--init is training\\.train's"):
        train_torch.main([*common, *recipe, "--init", str(tmp_path / "some.keras")])
    assert train_torch.main([*common, *recipe]) == 0

    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert state["keras_torch_max_difference"] < 1e-4
    assert "PyTorch" in state["machine"] and "training.train_torch" in state["command"]

    # The run exports with training.train and the int8 model reads faces as the float one does.
    export = ["--out", str(stem), "--export-only", "--representative", "35", "--no-evaluate"]
    assert train.main([*common, *recipe, *export]) == 0
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["labels"] == list(EMOTIONS)
    assert meta["recipe"]["grid"] == 3
    assert "training.train_torch" in meta["training"]["command"]
    faces = load_split(dataset, "test").images[::7]
    float_scores = keras.models.load_model(run / "best.keras")(normalize(faces[..., None]))
    int8 = evaluate.Int8Model(stem.with_suffix(".tflite"))
    int8_scores = np.stack([int8(face)[0] for face in faces])
    np.testing.assert_allclose(int8_scores, np.asarray(float_scores), atol=0.05)


@pytest.mark.parametrize("grid", [1, 3])
def test_the_torch_network_computes_what_the_keras_one_does(grid: int) -> None:
    """With weights far from their initial ones, so a misread layout (the grid flattened in
    NCHW order instead of Keras' NHWC) shows in the scores."""
    torch = pytest.importorskip("torch")
    from training.model import model_from_recipe
    from training.train_torch import EmotionNet, max_difference

    recipe = {**RECIPE_DEFAULTS, "widths": [4, 8, 8, 16], "depths": [1, 1, 1, 1], "grid": grid}
    torch.manual_seed(0)
    net = EmotionNet(recipe)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0.0, 0.5)
    keras_model = model_from_recipe(recipe)
    keras_model.set_weights(net.keras_weights())
    faces = torch.randn(8, 1, 48, 48)
    assert max_difference(net, keras_model, faces) < 1e-4
