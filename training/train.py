"""Train the emotion model on FER2013 and export it to int8 TFLite: ``python -m training.train``.

Checkpoints go to ``runs/<name>/``: ``last.keras`` every epoch, ``best.keras`` on the best
validation accuracy, ``state.json`` (history, command, machine, time) and ``curves.png``.
``--resume`` continues an interrupted run from ``last.keras`` with the batches it would have seen
(dropout masks are drawn afresh). The validation split is carved out of Training; the test split
is used only for the final figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RECIPE_DEFAULTS: dict[str, Any] = {
    "epochs": 35,
    "batch_size": 128,
    "learning_rate": 0.05,
    "warmup_epochs": 1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "label_smoothing": 0.1,
    "val_fraction": 0.1,
    "widths": [32, 48, 96, 192],
    "depths": [1, 2, 2, 2],
    "feature_size": 128,
    "dropout": 0.3,
    "grid": 1,
    "mixup": 0.0,
    "noise": 0.0,
    "distill": 0.0,
    "fer2013_weight": 1.0,
    "seed": 1234,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="Kaggle-layout root, or fer2013.csv")
    p.add_argument("--run", default="runs/shipped", type=Path, help="checkpoint folder")
    p.add_argument("--out", default="models/emotion_int8", type=Path, help="export stem")
    p.add_argument("--resume", action="store_true", help="continue from <run>/last.keras")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--no-evaluate", action="store_true", help="skip the test-split figures")
    p.add_argument(
        "--export-only", action="store_true", help="export <run>/best.keras as it is now"
    )
    p.add_argument("--limit", type=int, default=0, help="use only N training images (tests)")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra/inter-op threads")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument(
        "--init", type=Path, default=None, help="start from this checkpoint's weights (a restart)"
    )
    p.add_argument("--representative", type=int, default=500, help="images for calibration")
    p.add_argument(
        "--teacher",
        type=Path,
        nargs="+",
        default=[],
        help="distil from these (with --distill): checkpoints (their scores on face and mirror) "
        "or teacher files (.npz of training.teachers); the mean of their scores",
    )
    for key, value in RECIPE_DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, list):
            p.add_argument(flag, type=int, nargs="+", default=value)
        else:
            p.add_argument(flag, type=type(value), default=value)
    args = p.parse_args(argv)
    if not 0.0 <= args.distill <= 1.0:
        p.error(f"--distill must be between 0 and 1, not {args.distill}")
    if not 0.0 <= args.fer2013_weight <= 1.0:
        p.error(f"--fer2013-weight must be between 0 and 1, not {args.fer2013_weight}")
    if bool(args.teacher) != (args.distill > 0):
        p.error("--teacher and --distill go together: give both, or neither")
    return args


def same_recipe(recorded: dict[str, Any], recipe: dict[str, Any]) -> bool:
    """Whether a run recorded with ``recorded`` can go on under ``recipe``; keys added to
    :data:`RECIPE_DEFAULTS` since then read as their defaults, which is what that run did."""
    return {**RECIPE_DEFAULTS, **recorded} == recipe


def teacher_scores(
    teachers: list[Path], images: np.ndarray, names: tuple[str, ...] = ()
) -> np.ndarray:
    """The teachers' mean scores (what distillation learns): a checkpoint's mean over each face
    and its mirror image, a teacher file's (``.npz``, :mod:`training.teachers`) as recorded for
    each Training face of ``names`` (relative to the split folder, as in ``Split.names``)."""
    from training import teachers as teacher_files
    from training.evaluate import float_predict

    mirrored = images[:, :, ::-1]
    scores = []
    for teacher in teachers:
        if Path(teacher).suffix == ".npz":
            scores.append(teacher_files.load(teacher, [f"train/{name}" for name in names]))
        else:
            scores.append(np.mean([float_predict(teacher, x) for x in (images, mirrored)], axis=0))
    return np.mean(scores, axis=0)


def training_targets(
    labels: np.ndarray,
    num_classes: int,
    teacher: np.ndarray | None,
    distill: float,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """One-hot labels (or ``base``, e.g. labels mixed with FER+ votes), blended
    ``(1 - distill) : distill`` with the teacher's scores if any."""
    one_hot = np.eye(num_classes, dtype=np.float32)[labels] if base is None else base
    if teacher is None:
        return one_hot
    return ((1 - distill) * one_hot + distill * teacher).astype(np.float32)


def fit_targets(
    teachers: list[Path],
    recipe: dict[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    base: np.ndarray | None = None,
    names: tuple[str, ...] = (),
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """The faces trained on: their targets (``base`` or one-hot labels, distilled from
    ``teachers`` if any) and sample weights (class weights of the targets' top class), and the
    teachers' accuracy on the validation split (or None). ``names``: the faces' names, which
    teacher files are read by."""
    from training import EMOTIONS
    from training.data import class_weights

    fit_labels = labels[fit_idx]
    fit_base = base[fit_idx] if base is not None else None
    top = fit_base.argmax(axis=1) if fit_base is not None else fit_labels
    weights = class_weights(top, len(EMOTIONS))
    teacher, accuracy = None, None
    if teachers:
        teacher = teacher_scores(teachers, images, names)
        accuracy = float(np.mean(teacher[val_idx].argmax(axis=1) == labels[val_idx]))
        log.info("teachers: validation %.4f", accuracy)
        teacher = teacher[fit_idx]
    targets = training_targets(fit_labels, len(EMOTIONS), teacher, recipe["distill"], fit_base)
    return targets, weights[top], accuracy


def base_targets(
    data: Path, cache_dir: Path | None, limit: int, seed: int, fer2013_weight: float
) -> np.ndarray | None:
    """Training's FER2013 labels mixed with its FER+ votes (:func:`training.ferplus.mixed_targets`,
    ``λ = fer2013_weight``), row for row with :func:`training_split`'s images; None at λ = 1."""
    if fer2013_weight >= 1.0:
        return None
    from training import ferplus

    train = training_faces(data, cache_dir, limit, seed)
    votes = ferplus.votes_for(train.names, "train", ferplus.read_votes(ferplus.find_csv(data)))
    return ferplus.mixed_targets(train.labels, votes, fer2013_weight)


def configure_tf(threads: int, seed: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # main() called in a process that has already run TensorFlow
        log.info("TensorFlow is already running: its thread counts stay as they are")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_compiled(recipe: dict[str, Any], steps_per_epoch: int):
    import keras

    from training.model import model_from_recipe

    model = model_from_recipe(recipe)
    warmup = recipe["warmup_epochs"] * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe["learning_rate"] / 10,
        warmup_target=recipe["learning_rate"],
        warmup_steps=warmup,
        decay_steps=max(1, recipe["epochs"] * steps_per_epoch - warmup),
    )
    optimizer = keras.optimizers.SGD(
        schedule, momentum=recipe["momentum"], nesterov=True, weight_decay=recipe["weight_decay"]
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe["label_smoothing"]),
        metrics=["accuracy"],
        jit_compile=False,
    )
    return model


def make_checkpointer(run_dir: Path, state: dict[str, Any]):
    """A callback that saves ``last.keras`` and ``state.json`` every epoch, ``best.keras`` on
    a new best validation accuracy (written atomically, so a kill never leaves a torn file)."""
    import keras

    class Checkpointer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            val = float(logs.get("val_accuracy", 0.0))
            save_checkpoint(self.model, run_dir / "last.keras")
            if val > state["best_val_accuracy"]:
                state.update(best_val_accuracy=val, best_epoch=epoch + 1)
                save_checkpoint(self.model, run_dir / "best.keras")
            state["epoch"] = epoch + 1
            state["seconds"] = state.get("seconds", 0.0) + time.monotonic() - self.started
            state["history"].append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
            write_state(run_dir, state)
            log.info("epoch %d: %s", epoch + 1, json.dumps(state["history"][-1]))

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.monotonic()

    return Checkpointer()


def save_checkpoint(model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    tmp.replace(path)


def training_faces(data: Path, cache_dir: Path | None, limit: int, seed: int):
    """The Training split (only ``limit`` of its faces, class-balanced, when non-zero)."""
    from training.data import Split, load_split, stratified_split

    train = load_split(data, "train", cache_dir)
    if not limit:
        return train
    keep, _ = stratified_split(train.labels, 1 - limit / len(train.labels), seed)
    return Split(train.images[keep], train.labels[keep], tuple(train.names[i] for i in keep))


def training_split(
    data: Path, cache_dir: Path | None, limit: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training's images and labels (see :func:`training_faces`) and the indices of the faces
    trained on and of the validation split held out of them."""
    from training.data import stratified_split

    train = training_faces(data, cache_dir, limit, seed)
    fit_idx, val_idx = stratified_split(train.labels, val_fraction, seed)
    return train.images, train.labels, fit_idx, val_idx


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = run_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(run_dir / "state.json")


def state_of(checkpoint: str) -> dict[str, Any]:
    """The ``state.json`` of the run that wrote ``checkpoint`` (``{}`` when that file is gone)."""
    state_file = Path(checkpoint).parent / "state.json"
    return json.loads(state_file.read_text()) if state_file.is_file() else {}


def ancestors(init: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The warm restarts a run descends from, oldest first: ``(checkpoint, state)`` along its
    ``init`` line (a soup ends the line: it has several parents, see :func:`ancestry`)."""
    chain: list[tuple[str, dict[str, Any]]] = []
    while init:
        state = state_of(init)
        chain.append((init, state))
        init = state.get("init")
    return chain[::-1]


def _parents(state: dict[str, Any]) -> list[str]:
    """The checkpoints a run started from: a warm restart's ``init``, a soup's ingredients."""
    if state.get("init"):
        return [state["init"]]
    return [ingredient["checkpoint"] for ingredient in state.get("soup", {}).get("ingredients", [])]


def ancestry(checkpoints: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every run behind ``checkpoints``, each once, parents before children: the ``init`` of a
    warm restart and the ingredients of a soup (:mod:`training.soup`) alike."""
    found: dict[str, dict[str, Any]] = {}

    def visit(checkpoint: str) -> None:
        if checkpoint in found:
            return
        state = state_of(checkpoint)
        for parent in _parents(state):
            visit(parent)
        found[checkpoint] = state

    for checkpoint in checkpoints:
        visit(checkpoint)
    return list(found.items())


def _epochs_used(checkpoint: str, state: dict[str, Any]) -> int:
    """How many of its run's epochs a checkpoint holds: ``best.keras`` stops at the best one."""
    return state.get("best_epoch" if Path(checkpoint).name == "best.keras" else "epoch", 0)


def earlier_runs(chain: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """What the model's JSON says of each earlier run: command, epochs, time, machine."""
    return [
        {
            "checkpoint": checkpoint,
            "command": state.get("command"),
            "epochs": state.get("epoch"),
            "epochs_used": _epochs_used(checkpoint, state),
            "seconds": round(state.get("seconds", 0.0)),
            "machine": state.get("machine"),
        }
        for checkpoint, state in chain
    ]


def full_history(
    chain: list[tuple[str, dict[str, Any]]], history: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[int]]:
    """The earlier runs' histories (up to the epoch each checkpoint holds) and this run's, end
    to end with epochs counted from the first, and the epochs after which each restart began."""
    joined: list[dict[str, Any]] = []
    restarts = []
    for checkpoint, state in chain:
        used = _epochs_used(checkpoint, state)
        offset = len(joined)
        kept = [h for h in state.get("history", []) if h["epoch"] <= used]
        joined += [{**h, "epoch": offset + h["epoch"]} for h in kept]
        restarts.append(len(joined))
    offset = len(joined)
    joined += [{**h, "epoch": offset + h["epoch"]} for h in history]
    return joined, restarts


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.processor() or ''}".strip(
        ", "
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    recipe = {key: getattr(args, key) for key in RECIPE_DEFAULTS}
    configure_tf(args.threads, args.seed)

    import keras

    from training import EMOTIONS
    from training.data import describe
    from training.pipeline import eval_dataset, train_dataset

    images, labels, fit_idx, val_idx = training_split(
        args.data, args.cache_dir, args.limit, args.val_fraction, args.seed
    )
    run_dir = args.run
    run_dir.mkdir(parents=True, exist_ok=True)
    teachers = [str(t) for t in args.teacher]
    resuming = (args.resume or args.export_only) and (run_dir / "last.keras").exists()
    if resuming:
        state = json.loads((run_dir / "state.json").read_text())
        if not same_recipe(state["recipe"], recipe):
            raise SystemExit(f"{run_dir} was trained with another recipe: {state['recipe']}")
        recorded_teachers = state.get("teachers", [])  # runs from before distillation: none
        if recorded_teachers != teachers:
            raise SystemExit(f"{run_dir} was distilled from other teachers: {recorded_teachers}")
    else:
        state = {
            "recipe": recipe,
            "data": describe(args.data),
            "limit": args.limit,
            "init": str(args.init) if args.init else None,
            "teachers": teachers,
            "command": " ".join([Path(sys.executable).name, "-m", "training.train", *argv]),
            "machine": machine(),
            "epoch": 0,
            "best_val_accuracy": -1.0,
            "best_epoch": 0,
            "history": [],
        }

    training_left = state["epoch"] < recipe["epochs"] and not args.export_only
    # Teachers take minutes of inference: they score the faces only when epochs are left.
    base = base_targets(args.data, args.cache_dir, args.limit, args.seed, args.fer2013_weight)
    names = training_faces(args.data, args.cache_dir, args.limit, args.seed).names
    targets, sample_weights, teacher_accuracy = fit_targets(
        args.teacher if training_left else [], recipe, images, labels, fit_idx, val_idx, base, names
    )
    if teacher_accuracy is not None:
        state["teacher_val_accuracy"] = teacher_accuracy
    train_ds, steps = train_dataset(
        images[fit_idx],
        targets,
        sample_weights,
        args.batch_size,
        args.seed,
        start_epoch=state["epoch"],
        mixup_alpha=recipe["mixup"],
        noise=recipe["noise"],
    )
    # With FER+ votes, validation scores the top class of the same mixed targets.
    val_labels = labels[val_idx] if base is None else base[val_idx].argmax(axis=1)
    val_ds = eval_dataset(images[val_idx], val_labels, len(EMOTIONS))
    log.info("train %d, validation %d, %d steps/epoch", len(fit_idx), len(val_idx), steps)

    if resuming:
        model = keras.models.load_model(run_dir / "last.keras")
        log.info("resuming %s at epoch %d", run_dir, state["epoch"])
    else:
        model = build_compiled(recipe, steps)
        if args.init:  # weights only: the optimizer and its schedule start afresh
            model.set_weights(keras.models.load_model(args.init).get_weights())
    log.info("%d parameters", model.count_params())

    if training_left:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=recipe["epochs"],
            initial_epoch=state["epoch"],
            steps_per_epoch=steps,
            shuffle=False,  # the dataset shuffles itself, seeded per epoch
            callbacks=[make_checkpointer(run_dir, state)],
            verbose=1 if sys.stdout.isatty() else 2,
        )
    from training.report import plot_curves

    chain = ancestors(state.get("init"))
    history, restarts = full_history(chain, state["history"])
    plot_curves(history, run_dir / "curves.png", restarts)
    if args.no_export:
        return 0

    best = keras.models.load_model(run_dir / "best.keras")
    lineage = earlier_runs(ancestry([state["init"]] if state.get("init") else []))
    # The recipe as given: a run recorded before a key existed gets that key's default.
    export_and_evaluate(best, args, {**state, "recipe": recipe}, images, labels, fit_idx, lineage)
    return 0


def export_and_evaluate(
    best,
    args: argparse.Namespace,
    state: dict[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    fit_idx: np.ndarray,
    lineage: list[dict[str, Any]],
) -> None:
    """Export ``best`` to ``args.out`` with the JSON that says how it was made (``state``, and
    ``lineage``: the earlier runs it comes from), then add the test-split figures to it."""
    from training import EMOTIONS
    from training.export import export, representative_rows, write_json

    recipe = state["recipe"]
    chosen = fit_idx[representative_rows(labels[fit_idx], args.representative, recipe["seed"])]
    representative = images[chosen]
    counts = np.bincount(labels, minlength=len(EMOTIONS))
    validation = f"{recipe['val_fraction']:.0%} of Training, stratified, seed {recipe['seed']}"
    seconds_by_run = {str(Path(run["checkpoint"]).parent): run["seconds"] for run in lineage}
    training = {
        "data": state["data"],
        "split": "Training",
        "images": len(labels),
        "class_counts": dict(zip(EMOTIONS, counts.tolist(), strict=True)),
        "validation": validation,
        "epochs": state["epoch"],
        "earlier_runs": lineage,
        "best_epoch": state["best_epoch"],
        "best_val_accuracy": round(state["best_val_accuracy"], 4),
        "seconds": round(state.get("seconds", 0.0)),
        "seconds_with_earlier_runs": round(state.get("seconds", 0.0))
        + sum(seconds or 0 for seconds in seconds_by_run.values()),
        "command": state["command"],
        "machine": state["machine"],
        "parameters": int(best.count_params()),
        "representative_images": len(representative),
    }
    if "soup" in state:
        training["soup"] = state["soup"]
    if state.get("teachers"):
        training["teachers"] = {
            "checkpoints": state["teachers"],
            "val_accuracy": round(state["teacher_val_accuracy"], 4),
        }
    document = export(
        best, representative, labels[chosen], args.out, {"recipe": recipe, "training": training}
    )
    if args.no_evaluate:
        return

    from training.evaluate import evaluate

    run_dir = args.run
    document["evaluation"] = evaluate(
        args.out.with_suffix(".tflite"), args.data, "test", run_dir / "best.keras", run_dir
    )
    write_json(args.out.with_suffix(".json"), document)
    log.info("PublicTest: %s", json.dumps(summary(document["evaluation"])))


def summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of an evaluation (no confusion matrices)."""
    keys = ("accuracy", "macro_recall", "macro_f1")
    return {
        "int8": {k: evaluation["int8"][k] for k in keys},
        "float": {k: evaluation["float"][k] for k in keys} if "float" in evaluation else None,
        "agreement": evaluation.get("float_int8_agreement"),
        "latency_ms": evaluation.get("latency_ms_single_thread"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
