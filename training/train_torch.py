"""Train the shipped recipe in PyTorch on a CUDA GPU: ``python -m training.train_torch``.

The lent GPU machines carry PyTorch but not TensorFlow, and Keras on JAX ran there at about
2.5 s a training step (cause not found), so this trains the network of
:func:`training.model.build_model` natively in PyTorch, with the recipe and flags of
:mod:`training.train`: the batches of :mod:`training.host_pipeline`, SGD with Nesterov momentum
and weight decay applied as Keras applies it, the same warm-up and cosine schedule, label
smoothing, class weights, mixup and distillation. Every epoch it writes ``last.keras`` (and
``best.keras`` on a new best validation accuracy) through Keras on whatever backend is installed,
and ``state.json`` in :mod:`training.train`'s form, so ``python -m training.train --export-only``
with the same flags exports the run on a machine with TensorFlow. It starts afresh: no
``--resume`` or ``--init``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training import EMOTIONS
from training.model import grid_pool, model_from_recipe
from training.train import (
    RECIPE_DEFAULTS,
    base_targets,
    fit_targets,
    machine,
    parse_args,
    save_checkpoint,
    training_faces,
    training_split,
    write_state,
)

log = logging.getLogger(__name__)

# Keras' BatchNormalization defaults: epsilon 1e-3, moving averages with momentum 0.99.
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.01


class EmotionNet(nn.Module):
    """:func:`training.model.build_model` in PyTorch (NCHW); returns logits."""

    def __init__(self, recipe: dict[str, Any]):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for stage, (width, depth) in enumerate(
            zip(recipe["widths"], recipe["depths"], strict=True)
        ):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(depth):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width, eps=BN_EPSILON, momentum=BN_MOMENTUM),
                    nn.ReLU(),
                ]
                channels = width
        self.stages = nn.Sequential(*layers)
        self.grid_window = grid_pool(recipe["widths"], recipe["grid"])
        self.features = nn.Linear(channels * recipe["grid"] ** 2, recipe["feature_size"])
        self.dropout = nn.Dropout(recipe["dropout"])
        self.logits = nn.Linear(recipe["feature_size"], len(EMOTIONS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.avg_pool2d(self.stages(x), self.grid_window)
        x = x.permute(0, 2, 3, 1).flatten(1)  # Keras' Flatten reads NHWC
        return self.logits(self.dropout(torch.relu(self.features(x))))

    def keras_weights(self) -> list[np.ndarray]:
        """The weights in the order and layout of the Keras model's ``get_weights()``."""
        weights = []
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # OIHW -> HWIO
                weights.append(module.weight.detach().permute(2, 3, 1, 0))
            elif isinstance(module, nn.BatchNorm2d):
                weights += [module.weight, module.bias, module.running_mean, module.running_var]
            elif isinstance(module, nn.Linear):  # (out, in) -> (in, out)
                weights += [module.weight.detach().T, module.bias]
        return [w.detach().cpu().numpy().copy() for w in weights]


def learning_rate(step: int, recipe: dict[str, Any], steps_per_epoch: int) -> float:
    """Keras' ``CosineDecay`` as :func:`training.train.build_compiled` sets it up: linear
    warm-up from a tenth of the rate, then a cosine to zero."""
    peak = recipe["learning_rate"]
    warmup = recipe["warmup_epochs"] * steps_per_epoch
    if step < warmup:
        return peak / 10 + (peak - peak / 10) * step / warmup
    decay = max(1, recipe["epochs"] * steps_per_epoch - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(step - warmup, decay) / decay))


def soft_cross_entropy(logits, targets, weights, label_smoothing: float):
    """Keras' ``CategoricalCrossentropy(label_smoothing)`` with sample weights, summed over
    the batch and divided by its size."""
    targets = targets * (1 - label_smoothing) + label_smoothing / targets.shape[1]
    per_face = -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1)
    return (per_face * weights).mean()


def validate(net: nn.Module, x: torch.Tensor, labels: torch.Tensor, label_smoothing: float):
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(batch) for batch in x.split(512)])
    one_hot = nn.functional.one_hot(labels, len(EMOTIONS)).float()
    loss = soft_cross_entropy(
        logits, one_hot, torch.ones_like(labels, dtype=torch.float32), label_smoothing
    )
    return float(loss), float((logits.argmax(dim=1) == labels).float().mean())


def max_difference(net: nn.Module, keras_model, faces: torch.Tensor) -> float:
    """The largest difference between the two networks' scores on ``faces`` (NCHW)."""
    keras_scores = keras_model.predict(faces.permute(0, 2, 3, 1).cpu().numpy(), verbose=0)
    net.eval()
    with torch.no_grad():
        torch_scores = torch.softmax(net(faces), dim=1).cpu().numpy()
    return float(np.abs(keras_scores - torch_scores).max())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    for flag in ("resume", "init", "export_only"):
        if getattr(args, flag):
            raise SystemExit(
                f"--{flag.replace('_', '-')} is training.train's: train_torch starts afresh"
            )
    recipe = {key: getattr(args, key) for key in RECIPE_DEFAULTS}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True

    from training.data import describe
    from training.host_pipeline import normalize, train_batches

    images, labels, fit_idx, val_idx = training_split(
        args.data, args.cache_dir, args.limit, args.val_fraction, args.seed
    )
    base = base_targets(args.data, args.cache_dir, args.limit, args.seed, args.fer2013_weight)
    names = training_faces(args.data, args.cache_dir, args.limit, args.seed).names
    targets, sample_weights, teacher_accuracy = fit_targets(
        args.teacher, recipe, images, labels, fit_idx, val_idx, base, names
    )
    batches, steps = train_batches(
        images[fit_idx],
        targets,
        sample_weights,
        args.batch_size,
        args.seed,
        mixup_alpha=recipe["mixup"],
        noise=recipe["noise"],
    )
    val_x = torch.from_numpy(normalize(images[val_idx])[:, None]).to(device)  # NCHW
    # With FER+ votes, validation scores the top class of the same mixed targets (as in Keras).
    val_top = labels[val_idx] if base is None else base[val_idx].argmax(axis=1)
    val_labels = torch.from_numpy(val_top).to(device)

    net = EmotionNet(recipe).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=recipe["learning_rate"], momentum=recipe["momentum"], nesterov=True
    )
    run_dir = args.run
    run_dir.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    keras_model = model_from_recipe(recipe)

    state: dict[str, Any] = {
        "recipe": recipe,
        "data": describe(args.data),
        "limit": args.limit,
        "init": None,
        "teachers": [str(t) for t in args.teacher],
        "command": " ".join([Path(sys.executable).name, "-m", "training.train_torch", *argv]),
        "machine": f"{machine()}, PyTorch on {gpu}",
        "epoch": 0,
        "best_val_accuracy": -1.0,
        "best_epoch": 0,
        "history": [],
        "seconds": 0.0,
    }
    if teacher_accuracy is not None:
        state["teacher_val_accuracy"] = teacher_accuracy
    log.info(
        "train %d, validation %d, %d steps/epoch on %s", len(fit_idx), len(val_idx), steps, gpu
    )
    step = 0
    for epoch in range(recipe["epochs"]):
        started = time.monotonic()
        net.train()
        losses, correct = [], []
        for _ in range(steps):
            x, y, w = (torch.from_numpy(a).to(device, non_blocking=True) for a in next(batches))
            x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
            lr = learning_rate(step, recipe, steps)
            with torch.no_grad():  # Keras' decoupled weight decay: w -= w * decay * lr
                for p in net.parameters():
                    p.mul_(1 - recipe["weight_decay"] * lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = net(x)
            loss = soft_cross_entropy(logits, y, w, recipe["label_smoothing"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(loss.detach())
            correct.append((logits.argmax(1) == y.argmax(1)).float().mean().detach())
        val_loss, val_accuracy = validate(net, val_x, val_labels, recipe["label_smoothing"])
        keras_model.set_weights(net.keras_weights())
        save_checkpoint(keras_model, run_dir / "last.keras")
        if val_accuracy > state["best_val_accuracy"]:
            state.update(best_val_accuracy=val_accuracy, best_epoch=epoch + 1)
            save_checkpoint(keras_model, run_dir / "best.keras")
        state["epoch"] = epoch + 1
        state["seconds"] += time.monotonic() - started
        entry = {
            "epoch": epoch + 1,
            "accuracy": float(torch.stack(correct).mean()),
            "loss": float(torch.stack(losses).mean()),
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
        }
        state["history"].append(entry)
        if epoch == 0:  # the port's check: the Keras model computes what the network does
            state["keras_torch_max_difference"] = max_difference(net, keras_model, val_x[:512])
            log.info("Keras and PyTorch differ by %.2e", state["keras_torch_max_difference"])
        write_state(run_dir, state)
        log.info("epoch %d: %s", epoch + 1, json.dumps(entry))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
