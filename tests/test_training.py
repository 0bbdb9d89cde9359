"""The training pipeline (loaders, cache, train→export round trip) and the shipped int8 model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import PER_CLASS, fer_faces
from training import EMOTIONS
from training.data import load_csv, load_folder, load_split

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "emotion_int8.tflite"


def test_folder_and_csv_loaders_agree(dataset: Path) -> None:
    from_csv = load_csv(dataset / "fer2013.csv")
    for split in ("train", "test"):
        folder = load_split(dataset, split)
        assert folder.images.shape == (PER_CLASS[split] * len(EMOTIONS), 48, 48)
        assert folder.images.dtype == np.uint8
        np.testing.assert_array_equal(folder.images, from_csv[split].images)
        np.testing.assert_array_equal(folder.labels, from_csv[split].labels)
    assert len(from_csv["private"]) == 0
    np.testing.assert_array_equal(
        load_split(dataset / "test", "ignored").images, from_csv["test"].images
    )


def test_cache_is_reused_and_invalidated_when_the_data_changes(dataset: Path) -> None:
    cache = Path(os.environ["MOODMELODY_CACHE"])
    first = load_folder(dataset / "test")
    assert len(list(cache.glob("*.npz"))) == 1
    assert np.array_equal(load_folder(dataset / "test").images, first.images)
    assert len(list(cache.glob("*.npz"))) == 1

    changed = dataset / "test" / "happy" / "PublicTest_00000.jpg"
    cv2.imwrite(str(changed), np.full((48, 48), 7, np.uint8))
    os.utime(changed, ns=(1, 1))
    second = load_folder(dataset / "test")
    assert len(list(cache.glob("*.npz"))) == 1, "the stale decode is replaced, not kept"
    index = second.names.index("happy/PublicTest_00000.jpg")
    assert np.all(np.abs(second.images[index].astype(int) - 7) <= 2)

    (dataset / "test" / "sad" / "PublicTest_00001.jpg").unlink()
    assert len(load_folder(dataset / "test")) == len(first) - 1

    # Another source keeps its own cache file beside it.
    load_folder(dataset / "train")
    assert len(list(cache.glob("*.npz"))) == 2


def test_a_warm_restart_knows_the_runs_it_descends_from(tmp_path: Path) -> None:
    from training import train

    def run(name: str, epochs: int, best: int, init: str | None) -> str:
        folder = tmp_path / name
        folder.mkdir()
        history = [{"epoch": e, "val_accuracy": e / 10} for e in range(1, epochs + 1)]
        state = {"init": init, "command": f"train {name}", "epoch": epochs, "best_epoch": best}
        state |= {"seconds": 60.4 * epochs, "history": history}
        (folder / "state.json").write_text(json.dumps(state))
        return str(folder)

    first = run("first", 5, 3, None)
    second = run("second", 4, 4, f"{first}/best.keras")
    chain = train.ancestors(f"{second}/last.keras")
    assert [state["command"] for _, state in chain] == ["train first", "train second"]
    summary = train.earlier_runs(chain)
    assert [(r["epochs"], r["epochs_used"], r["seconds"]) for r in summary] == [
        (5, 3, 302),
        (4, 4, 242),
    ]

    history, restarts = train.full_history(chain, [{"epoch": 1, "val_accuracy": 0.9}])
    # first's epochs 1-3 (best.keras stops there), second's 1-4, then this run's epoch 1.
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert [h["val_accuracy"] for h in history] == [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.4, 0.9]
    assert restarts == [3, 7]
    assert train.ancestors(None) == []
    assert train.full_history([], history[:2]) == (history[:2], [])

    # A soup of both, and a restart from the soup: every run behind it, each once.
    soup = tmp_path / "soup"
    soup.mkdir()
    ingredients = [{"checkpoint": f"{first}/best.keras"}, {"checkpoint": f"{second}/last.keras"}]
    state = {"command": "soup", "epoch": 0, "seconds": 9.0, "soup": {"ingredients": ingredients}}
    (soup / "state.json").write_text(json.dumps(state))
    third = run("third", 2, 2, f"{soup}/best.keras")
    everything = train.ancestry([f"{third}/best.keras", f"{first}/best.keras"])
    commands = [state["command"] for _, state in everything]
    assert commands == ["train first", "train second", "soup", "train third"]
    assert [state["command"] for _, state in train.ancestors(f"{third}/best.keras")] == [
        "soup",
        "train third",
    ]


def test_a_run_recorded_before_mixup_existed_can_still_be_resumed() -> None:
    from training.train import RECIPE_DEFAULTS, same_recipe

    recorded = {key: value for key, value in RECIPE_DEFAULTS.items() if key != "mixup"}
    assert same_recipe(recorded, dict(RECIPE_DEFAULTS))
    assert not same_recipe(recorded, {**RECIPE_DEFAULTS, "mixup": 0.2})
    assert not same_recipe({**recorded, "epochs": 40}, dict(RECIPE_DEFAULTS))


@pytest.mark.training
def test_a_grid_averages_each_region_of_the_last_stage_separately() -> None:
    import keras

    from training.model import build_model

    widths, depths = (4, 4, 8, 8), (1, 1, 1, 1)
    model = build_model(widths, depths, 8, grid=3)
    assert build_model(widths, depths, 8, grid=1).get_layer("features").kernel.shape == (8, 8)
    assert model.get_layer("features").kernel.shape == (8 * 3 * 3, 8)

    face = np.random.default_rng(0).uniform(-1, 1, (1, 48, 48, 1)).astype(np.float32)
    last_stage = keras.Model(model.input, model.get_layer("s3c0_relu").output)(face)
    flattened = keras.Model(model.input, model.get_layer("flatten").output)(face)
    regions = np.asarray(last_stage)[0].reshape(3, 2, 3, 2, 8).mean(axis=(1, 3))  # [3, 3, 8]
    np.testing.assert_allclose(np.asarray(flattened)[0], regions.reshape(-1), rtol=1e-5)

    with pytest.raises(ValueError, match="grid 4 does not divide the last stage's 6×6 map"):
        build_model(widths, depths, 8, grid=4)


@pytest.mark.training
def test_mixup_blends_each_face_with_its_neighbour_and_the_labels_alike() -> None:
    import tensorflow as tf

    from training.pipeline import mixup, train_dataset

    # Seven faces, each a flat grey level, each its own emotion and sample weight.
    grey = np.arange(1, 8, dtype=np.float32) * 30
    images = tf.constant(np.broadcast_to(grey[:, None, None, None], (7, 48, 48, 1)))
    targets, weights = tf.eye(7), tf.constant(np.arange(1, 8, dtype=np.float32))
    seed = tf.constant([1234, 5], tf.int64)

    x, y, w = (t.numpy() for t in mixup(images, targets, weights, 0.4, seed))
    lam = np.diag(y)
    previous = np.roll(np.arange(7), 1)
    assert np.allclose(y.sum(axis=1), 1.0)
    assert np.allclose(y[np.arange(7), previous], 1 - lam)
    assert np.allclose(x[:, 0, 0, 0], lam * grey + (1 - lam) * grey[previous], atol=1e-3)
    assert np.allclose(x.std(axis=(1, 2, 3)), 0.0, atol=1e-3)  # a whole-face blend, no patch
    assert np.allclose(w, lam * weights.numpy() + (1 - lam) * weights.numpy()[previous])
    assert lam.min() > 0 and not np.allclose(lam, lam[0])

    again = mixup(images, targets, weights, 0.4, seed)[1].numpy()
    other = mixup(images, targets, weights, 0.4, seed + 1)[1].numpy()
    assert np.array_equal(y, again) and not np.allclose(y, other)

    faces = np.random.default_rng(0).integers(0, 256, (64, 48, 48), np.uint8)
    labels = np.arange(64) % 7
    for alpha, soft in ((0.0, False), (0.4, True)):
        dataset, _ = train_dataset(faces, np.eye(7)[labels], np.ones(64), 32, 1, 0, alpha)
        batch_targets = next(iter(dataset))[1].numpy()
        assert (batch_targets.max(axis=1) < 1).any() == soft


@pytest.mark.training
def test_short_training_exports_a_model_the_device_runtime_loads(
    dataset: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorflow")
    from training import evaluate, train

    stem = tmp_path / "models" / "emotion_int8"
    common = ["--data", str(dataset), "--run", str(tmp_path / "run"), "--out", str(stem)]
    recipe = ["--epochs", "1", "--batch-size", "32", "--widths", "8", "8", "16", "16"]
    recipe += ["--representative", "35"]
    assert train.main([*common, *recipe]) == 0

    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["labels"] == list(EMOTIONS)
    assert meta["input_size"] == [48, 48]
    assert meta["output"] == "probabilities"
    assert meta["training"]["images"] == PER_CLASS["train"] * len(EMOTIONS)
    assert meta["evaluation"]["int8"]["images"] == PER_CLASS["test"] * len(EMOTIONS)
    assert 0 <= meta["evaluation"]["float_int8_agreement"] <= 1
    model = evaluate.Int8Model(stem.with_suffix(".tflite"))
    assert model.input["dtype"] == np.int8
    assert list(model.input["shape"]) == [1, 48, 48, 1]
    scores, features = model(np.full((48, 48), 128, np.uint8))
    assert scores.shape == (7,) and features.shape == (meta["feature_size"],)
    assert scores.sum() == pytest.approx(1.0, abs=0.05)
    # The head file holds what the household calibration standardises to.
    from device.calibration import load_reference

    reference = load_reference(stem.with_suffix(".tflite"))
    assert reference is not None
    assert reference.class_means.shape == (len(EMOTIONS), meta["feature_size"])

    # The JSON's normalisation is the one training used: int8 with it matches the float model.
    import keras

    from training.pipeline import normalize

    faces = load_split(dataset, "test").images[::7]
    float_model = keras.models.load_model(tmp_path / "run" / "best.keras")
    float_scores = float_model(normalize(faces[..., None]))
    int8_scores = np.stack([model(face)[0] for face in faces])
    np.testing.assert_allclose(int8_scores, np.asarray(float_scores), atol=0.05)

    # Resuming a finished run trains no further; a restart starts from its weights.
    assert train.main([*common, *recipe, "--resume", "--no-export"]) == 0
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 1
    restart = ["--run", str(tmp_path / "restart"), "--init", str(tmp_path / "run" / "best.keras")]
    assert train.main([*common, *recipe, *restart, "--learning-rate", "0", "--no-export"]) == 0
    restarted = keras.models.load_model(tmp_path / "restart" / "last.keras")
    np.testing.assert_array_equal(restarted.get_weights()[0], float_model.get_weights()[0])
    lineage = train.earlier_runs(train.ancestors(str(tmp_path / "restart" / "best.keras")))
    assert [run["checkpoint"] for run in lineage] == [
        str(tmp_path / "run" / "best.keras"),
        str(tmp_path / "restart" / "best.keras"),
    ]
    assert [run["epochs"] for run in lineage] == [1, 1]
    assert "--init" in lineage[1]["command"] and "--init" not in lineage[0]["command"]

    # A soup of the two runs is exported like a run; its JSON names what went into it.
    from training import soup

    soup_stem = tmp_path / "soup" / "emotion_int8"
    ingredients = [str(tmp_path / "run" / "best.keras"), str(tmp_path / "restart" / "last.keras")]
    soup_args = ["--run", str(tmp_path / "soup"), "--out", str(soup_stem), "--images", "100"]
    soup_args += ["--representative", "35", "--no-evaluate"]
    assert soup.main(["--data", str(dataset), *ingredients, *soup_args]) == 0
    soup_meta = json.loads(soup_stem.with_suffix(".json").read_text())
    made = soup_meta["training"]
    assert [i["checkpoint"] for i in made["soup"]["ingredients"]] == ingredients
    assert [run["checkpoint"] for run in made["earlier_runs"]] == ingredients
    assert made["seconds_with_earlier_runs"] >= sum(run["seconds"] for run in lineage)
    assert soup_meta["recipe"]["widths"] == [8, 8, 16, 16]
    assert "learning_rate" not in soup_meta["recipe"], "the ingredients' rates differ"
    soup_scores, _ = evaluate.Int8Model(soup_stem.with_suffix(".tflite"))(faces[0])
    assert soup_scores.sum() == pytest.approx(1.0, abs=0.05)

    # A run distilled from the first is exported with its teacher named; resuming it with
    # another teacher is refused.
    teacher = str(tmp_path / "run" / "best.keras")
    distilled = ["--run", str(tmp_path / "distilled"), "--no-evaluate"]
    distilled += ["--out", str(tmp_path / "distilled" / "emotion_int8")]
    distilled += ["--teacher", teacher, "--distill", "0.5"]
    assert train.main([*common, *recipe, *distilled]) == 0
    taught = json.loads((tmp_path / "distilled" / "emotion_int8.json").read_text())["training"]
    assert taught["teachers"]["checkpoints"] == [teacher]
    assert 0 <= taught["teachers"]["val_accuracy"] <= 1
    other_teacher = [*distilled[:-3], str(tmp_path / "restart" / "best.keras"), "--distill", "0.5"]
    with pytest.raises(SystemExit, match="other teachers"):
        train.main([*common, *recipe, *other_teacher, "--resume"])

    assert evaluate.main(["--model", str(stem.with_suffix(".tflite")), "--data", str(dataset)]) == 0
    assert (stem.parent / "emotion_int8_confusion.png").is_file()
    assert (tmp_path / "run" / "curves.png").is_file()


def test_distillation_targets_blend_the_label_with_the_teachers_scores() -> None:
    from training.train import parse_args, training_targets

    labels = np.array([0, 3])
    teacher = np.full((2, 7), 1 / 7, np.float32)
    np.testing.assert_array_equal(training_targets(labels, 7, None, 0.0), np.eye(7)[labels])
    blended = training_targets(labels, 7, teacher, 0.7)
    np.testing.assert_allclose(blended.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(blended[1, 3], 0.3 + 0.7 / 7, rtol=1e-6)
    np.testing.assert_allclose(blended[1, 0], 0.7 / 7, rtol=1e-6)

    for wrong in (["--distill", "0.5"], ["--teacher", "t.keras"], ["--distill", "1.5"]):
        with pytest.raises(SystemExit):
            parse_args(["--data", "d", *wrong])
    assert parse_args(["--data", "d", "--teacher", "t.keras", "--distill", "0.5"]).distill == 0.5


@pytest.mark.training
def test_teachers_score_a_face_and_its_mirror_image_alike(tmp_path: Path) -> None:
    from training.model import build_model
    from training.train import teacher_scores

    model = build_model((4, 4, 8, 8), (1, 1, 1, 1), 8)
    model.save(tmp_path / "teacher.keras")
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), np.uint8)
    scores = teacher_scores([tmp_path / "teacher.keras"] * 2, faces)
    mirrored = teacher_scores([tmp_path / "teacher.keras"], faces[:, :, ::-1].copy())
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(scores, mirrored, rtol=1e-4, atol=1e-6)
    assert not np.allclose(scores[0], scores[1]), "the faces differ, and so do their scores"


def test_a_soup_is_the_mean_of_its_ingredients_and_of_their_common_recipe() -> None:
    from training.soup import average_weights, shared_recipe

    first = [np.array([[1.0, 2.0]]), np.array([0.0])]
    second = [np.array([[3.0, 6.0]]), np.array([1.0])]
    soup = average_weights([first, second])
    np.testing.assert_array_equal(soup[0], [[2.0, 4.0]])
    np.testing.assert_array_equal(soup[1], [0.5])
    with pytest.raises(ValueError, match="not the same network"):
        average_weights([first, [np.array([[1.0, 2.0, 3.0]]), np.array([0.0])]])
    recipes = [{"widths": [8, 16], "seed": 1, "mixup": 0.0}, {"widths": [8, 16], "seed": 1}]
    assert shared_recipe(recipes) == {"widths": [8, 16], "seed": 1}


@pytest.mark.training
def test_batchnorm_statistics_are_measured_again_layer_after_layer() -> None:
    import keras

    from training.model import build_model
    from training.pipeline import normalize
    from training.soup import recalibrate_batchnorm

    model = build_model((4, 4, 8, 8), (1, 1, 1, 1), 8)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:  # statistics that fit no data, as after averaging
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 3.0, np.float32))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 9.0, np.float32))
    faces = np.random.default_rng(0).integers(0, 256, (50, 48, 48, 1), np.uint8)
    images = normalize(faces).numpy()
    recalibrate_batchnorm(model, images, batch_size=16)

    # Each layer's statistics are those of its input in the network as it is at the end.
    for layer in norms:
        inputs = np.asarray(keras.Model(model.input, layer.input)(images, training=False))
        inputs = inputs.reshape(-1, inputs.shape[-1])
        np.testing.assert_allclose(layer.moving_mean.numpy(), inputs.mean(axis=0), atol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(), inputs.var(axis=0), rtol=1e-3)


@pytest.mark.skipif(not MODEL.exists(), reason="no shipped model")
def test_shipped_model_is_consistent_with_its_json_and_head() -> None:
    from ai_edge_litert.interpreter import Interpreter

    from training.evaluate import Int8Model

    meta = json.loads(MODEL.with_suffix(".json").read_text())
    assert meta["labels"] == list(EMOTIONS)
    assert meta["input_size"] == [48, 48]
    assert MODEL.stat().st_size <= 1_000_000
    assert meta["size_bytes"] == MODEL.stat().st_size

    interpreter = Interpreter(model_path=str(MODEL))
    (inp,) = interpreter.get_input_details()
    assert list(inp["shape"]) == [1, 48, 48, 1] and inp["dtype"] == np.int8
    outputs = {d["name"]: d for d in interpreter.get_output_details()}
    scores = outputs[meta["outputs"]["scores"]]
    features = outputs[meta["outputs"]["features"]]
    assert list(scores["shape"]) == [1, len(EMOTIONS)]
    assert list(features["shape"]) == [1, meta["feature_size"]]
    assert {d["dtype"] for d in outputs.values()} == {np.int8}
    for role, detail in (("scores", scores), ("features", features)):
        assert meta["outputs"]["tensors"][role]["index"] == detail["index"]
    # Full-integer: every weight and activation is int8 (biases are int32).
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert dtypes <= {np.int8, np.int32}

    head = np.load(MODEL.parent / meta["head"]["file"])
    assert head["W"].shape == (meta["feature_size"], len(EMOTIONS))
    assert head["b"].shape == (len(EMOTIONS),)
    assert list(head["labels"]) == list(EMOTIONS)

    # The float head applied to the int8 features reproduces the int8 scores.
    model = Int8Model(MODEL)
    rng = np.random.default_rng(0)
    for image in [*fer_faces("test", "happy", 5, seed=0), rng.integers(0, 256, (48, 48))]:
        probs, feats = model(image.astype(np.uint8))
        logits = feats @ head["W"] + head["b"]
        expected = np.exp(logits - logits.max())
        np.testing.assert_allclose(probs, expected / expected.sum(), atol=0.08)


@pytest.mark.training
@pytest.mark.skipif(not MODEL.exists(), reason="no shipped model")
def test_a_checkpoint_rebuilt_from_the_int8_model_computes_what_it_computes() -> None:
    """A warm start from the shipped model needs its float weights, and only the .tflite holds
    them: the rebuilt network must compute what the int8 model computes, to within int8
    rounding, or the warm start would begin from another network."""
    from training.evaluate import Int8Model
    from training.from_tflite import rebuild
    from training.pipeline import normalize
    from training.train import RECIPE_DEFAULTS

    meta = json.loads(MODEL.with_suffix(".json").read_text())
    faces = np.stack([f for e in EMOTIONS for f in fer_faces("test", e, 30, seed=1)])
    model = rebuild(MODEL, {**RECIPE_DEFAULTS, **meta["recipe"]}, faces)
    rebuilt = np.asarray(model(normalize(faces[..., None]), training=False))
    shipped = Int8Model(MODEL).predict(faces)
    assert (rebuilt.argmax(1) == shipped.argmax(1)).mean() >= 0.95
    np.testing.assert_allclose(rebuilt, shipped, atol=0.1)
