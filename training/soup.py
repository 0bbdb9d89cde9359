"""Average the weights of runs of one network, a "model soup": ``python -m training.soup``.

Runs that descend from one checkpoint (warm restarts of it) stay in the same basin, so the mean
of their weights is itself a good network, usually a slightly better one. A mean of BatchNorm
statistics is not the statistics of the mean network, so they are measured again, layer by
layer, on clean training faces. The soup is written as ``<run>/best.keras`` with a
``state.json`` naming its ingredients, then exported and evaluated like a trained run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.train import (
    RECIPE_DEFAULTS,
    ancestry,
    configure_tf,
    earlier_runs,
    export_and_evaluate,
    machine,
    state_of,
    training_split,
    write_state,
)

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="Kaggle-layout root, or fer2013.csv")
    p.add_argument(
        "ingredients", nargs="+", type=Path, help="checkpoints (.keras) of runs of one network"
    )
    p.add_argument("--run", default="runs/soup", type=Path, help="folder for the soup")
    p.add_argument("--out", default=None, type=Path, help="export stem (<run>/emotion_int8)")
    p.add_argument("--images", type=int, default=10240, help="faces for the BatchNorm statistics")
    p.add_argument("--no-evaluate", action="store_true", help="skip the test-split figures")
    p.add_argument("--limit", type=int, default=0, help="use only N training images (tests)")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra/inter-op threads")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--representative", type=int, default=500, help="images for calibration")
    return p.parse_args(argv)


def average_weights(weight_sets: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several networks' weights (same shapes, same order)."""
    shapes = [[w.shape for w in weights] for weights in weight_sets]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("the ingredients are not the same network: their weights differ in shape")
    return [np.mean(layer, axis=0) for layer in zip(*weight_sets, strict=True)]


def recalibrate_batchnorm(model, images: np.ndarray, batch_size: int = 256) -> None:
    """Set each BatchNorm layer's moving mean and variance to the population statistics of its
    input over ``images`` (normalised ``[N, 48, 48, 1]``), first layer first, so every layer
    sees the outputs of the layers before it as they now are."""
    import keras

    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        probe = keras.Model(model.input, layer.input)
        total = np.zeros(layer.input.shape[-1])
        squares = np.zeros_like(total)
        count = 0
        for start in range(0, len(images), batch_size):
            batch = np.asarray(probe(images[start : start + batch_size], training=False))
            values = batch.reshape(-1, batch.shape[-1]).astype(np.float64)
            total += values.sum(axis=0)
            squares += np.square(values).sum(axis=0)
            count += len(values)
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign((squares / count - np.square(mean)).astype(np.float32))


def ingredient_recipe(checkpoint: Path) -> dict[str, Any]:
    """The recipe of the run that wrote ``checkpoint`` (from its ``state.json``)."""
    state = state_of(str(checkpoint))
    if "recipe" not in state:
        raise SystemExit(f"{checkpoint}: no state.json beside it, so its recipe is unknown")
    return {**RECIPE_DEFAULTS, **state["recipe"]}


def shared_recipe(recipes: list[dict[str, Any]]) -> dict[str, Any]:
    """The recipe keys on which all the ingredients' runs agree (the network, the split)."""
    return {k: v for k, v in recipes[0].items() if all(r.get(k) == v for r in recipes)}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    recipe = shared_recipe([ingredient_recipe(path) for path in args.ingredients])
    if not {"val_fraction", "seed"} <= recipe.keys():
        raise SystemExit("the ingredients held out different validation splits (seed, fraction)")
    configure_tf(args.threads, recipe["seed"])
    started = time.monotonic()

    import keras

    from training.data import describe
    from training.pipeline import normalize

    images, labels, fit_idx, val_idx = training_split(
        args.data, args.cache_dir, args.limit, recipe["val_fraction"], recipe["seed"]
    )
    rng = np.random.default_rng(recipe["seed"])
    statistics_idx = np.sort(rng.permutation(fit_idx)[: args.images])
    faces = normalize(images[statistics_idx, ..., None]).numpy()
    val_faces = normalize(images[val_idx, ..., None]).numpy()

    def val_accuracy(model) -> float:
        predicted = model.predict(val_faces, batch_size=512, verbose=0).argmax(axis=1)
        return float(np.mean(predicted == labels[val_idx]))

    models = [keras.models.load_model(path) for path in args.ingredients]
    accuracies = [val_accuracy(model) for model in models]
    for path, accuracy in zip(args.ingredients, accuracies, strict=True):
        log.info("ingredient %s: validation %.4f", path, accuracy)
    soup = models[0]
    soup.set_weights(average_weights([model.get_weights() for model in models]))
    recalibrate_batchnorm(soup, faces)
    soup_accuracy = val_accuracy(soup)
    log.info("soup of %d: validation %.4f", len(models), soup_accuracy)

    args.run.mkdir(parents=True, exist_ok=True)
    soup.save(args.run / "best.keras")
    state = {
        "recipe": recipe,
        "data": describe(args.data),
        "command": " ".join([Path(sys.executable).name, "-m", "training.soup", *argv]),
        "machine": machine(),
        "soup": {
            "ingredients": [
                {"checkpoint": str(path), "val_accuracy": round(accuracy, 4)}
                for path, accuracy in zip(args.ingredients, accuracies, strict=True)
            ],
            "batchnorm_images": len(faces),
        },
        "epoch": 0,
        "best_val_accuracy": soup_accuracy,
        "best_epoch": 0,
        "history": [],
        "seconds": time.monotonic() - started,
    }
    write_state(args.run, state)
    if args.out is None:
        args.out = args.run / "emotion_int8"
    lineage = earlier_runs(ancestry([str(path) for path in args.ingredients]))
    export_and_evaluate(soup, args, state, images, labels, fit_idx, lineage)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
