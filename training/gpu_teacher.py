"""A large teacher trained on FER+ vote distributions in one GPU run, on a time budget.

Here, once: ``python -m training.gpu_teacher pack --data ../shared/datasets/fer2013`` writes
``build/gpu/faces.npz`` (git-ignored, about 50 MB): every Training and PublicTest face as its
original JPEG bytes (the faithful pixels; raw pixels do not compress below the 64 MiB a device
run may carry), labels, FER+ votes and a digest of the decoded pixels. On the GPU machine
(``make gpu-teacher-command`` prints the whole call)::

    python3 -m training.gpu_teacher train --faces build/gpu/faces.npz --budget-s 420 --out $OUT

trains a ResNet-18 (the CIFAR form: a 3×3 stem, no max-pooling, for 48×48 faces) with
cross-entropy on the FER+ vote distributions (:func:`training.ferplus.mixed_targets`,
``--fer2013-weight`` 0 by default: a face FER+ calls not-a-face keeps its FER2013 label), on the
GPU: flip, ±10° rotation, ±10 % zoom, ±4 px shift, brightness and contrast, random erasing; SGD
with Nesterov momentum, a cosine learning rate over the *time* budget, bf16 autocast. It holds
out the student's validation split (10 % of Training, stratified, seed 1234, as
``training.train``), keeps the weights of the epoch best on it against the FER+ plurality, and
stops when the budget is spent. It then writes ``$OUT/gpu_resnet18.npz``, a teacher file
(:mod:`training.teachers`: its mean scores on each face and its mirror image, every Training
and PublicTest face) and ``$OUT/gpu_resnet18.json`` (history, validation and PublicTest
figures). It needs only PyTorch, NumPy and OpenCV, not TensorFlow or Keras.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from training import EMOTIONS, ferplus

log = logging.getLogger(__name__)

PACKED = Path("build/gpu/faces.npz")
NAME = "gpu_resnet18"
SIZE = 48
VAL_SEED = 1234  # training.train's default seed: the same validation split as the student


def digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images, np.uint8).tobytes()).hexdigest()


def pack(data: Path, out: Path, cache_dir: Path | None = None) -> None:
    """Training and PublicTest, as their JPEG files, labels and FER+ votes, in one ``.npz``."""
    from training.teachers import faces, read_votes

    names, images, labels = faces(data, cache_dir)
    blobs = [(data / name).read_bytes() for name in names]
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        names=np.array(names, dtype=bytes),
        jpeg=np.frombuffer(b"".join(blobs), np.uint8),
        offsets=offsets,
        labels=labels,
        votes=ferplus.votes_for(tuple(names), "", read_votes(data)).astype(np.uint8),
        digest=np.array(digest(images)),
    )
    log.info("packed %d faces into %s (%.1f MB)", len(names), out, out.stat().st_size / 1e6)


def unpack(path: Path) -> dict[str, np.ndarray]:
    """The packed faces, decoded: names, images ``uint8 [N, 48, 48]``, labels, votes."""
    import cv2

    with np.load(path) as packed:
        arrays = dict(packed)
    jpeg, offsets = arrays.pop("jpeg"), arrays.pop("offsets")
    arrays["images"] = np.stack(
        [
            cv2.imdecode(jpeg[offsets[i] : offsets[i + 1]], cv2.IMREAD_GRAYSCALE)
            for i in range(len(offsets) - 1)
        ]
    )
    if digest(arrays["images"]) != str(arrays.pop("digest")):
        log.warning("this OpenCV decodes the JPEGs to other pixels than the packing one did")
    arrays["names"] = [name.decode() for name in arrays["names"].tolist()]
    arrays["votes"] = arrays["votes"].astype(np.float32)
    return arrays


def resnet18(width: int = 64, num_classes: int = len(EMOTIONS)):
    """ResNet-18 for small grey faces: 3×3 stem at full resolution, stages of ``width`` (64 in
    ResNet-18) to 8 × ``width`` channels."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                nn.BatchNorm2d(cout),
            )
            self.skip = (
                nn.Identity()
                if stride == 1 and cin == cout
                else nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )
            )

        def forward(self, x):
            return nn.functional.relu(self.body(x) + self.skip(x))

    layers: list[nn.Module] = [
        nn.Conv2d(1, width, 3, 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]
    cin = width
    for i, cout in enumerate(width * m for m in (1, 2, 4, 8)):
        layers += [Block(cin, cout, 1 if i == 0 else 2), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def augment(x, generator):
    """A batch ``[B, 1, 48, 48]`` of faces scaled to −1..1, augmented on its device: flip,
    rotation, zoom and shift in one affine warp (black outside), contrast and brightness,
    random erasing (p = 0.5, 2–25 % of the face)."""
    import torch
    from torch.nn import functional

    b, dev = len(x), x.device

    def uniform(low, high, *shape):
        return torch.rand(b, *shape, device=dev, generator=generator) * (high - low) + low

    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    angle, zoom = uniform(-math.pi / 18, math.pi / 18), uniform(0.9, 1.1)
    shift = uniform(-4, 4, 2) * 2 / SIZE  # in grid units (−1..1 spans the face)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([flip * cos, -sin, shift[:, 0]], 1),
            torch.stack([flip * sin, cos, shift[:, 1]], 1),
        ],
        1,
    )
    grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = functional.grid_sample(x + 1, grid, align_corners=False) - 1  # black (−1) outside
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(0.7, 1.3, 1, 1, 1) + mean + uniform(-25, 25, 1, 1, 1) * 2 / 255
    x = x.clamp(-1, 1)
    area = uniform(0.02, 0.25) * SIZE * SIZE
    aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
    h = torch.sqrt(area * aspect).clamp(max=SIZE)
    w = torch.sqrt(area / aspect).clamp(max=SIZE)
    y0, x0 = uniform(0, 1) * (SIZE - h), uniform(0, 1) * (SIZE - w)
    pixels = torch.arange(SIZE, device=dev)
    rows = (pixels >= y0[:, None]) & (pixels < (y0 + h)[:, None])
    cols = (pixels >= x0[:, None]) & (pixels < (x0 + w)[:, None])
    mask = rows[:, :, None] & cols[:, None, :] & (uniform(0, 1) < 0.5)[:, None, None]
    fill = uniform(-1, 1)[:, None, None]
    return torch.where(mask[:, None], fill[:, None], x)


def cosine_lr(elapsed: float, budget: float, peak: float, warmup: float) -> float:
    """The learning rate after ``elapsed`` of ``budget`` seconds: linear warm-up over the
    first ``warmup`` seconds from a tenth of ``peak``, then cosine decay to 0 at the budget."""
    if elapsed < warmup:
        return peak * (0.1 + 0.9 * elapsed / warmup)
    progress = min(1.0, (elapsed - warmup) / max(budget - warmup, 1e-9))
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def predict(net, x, batch: int = 1024):
    """Softmax scores, the mean over each face and its mirror image."""
    import torch

    net.eval()
    out = []
    with torch.no_grad(), torch.autocast(x.device.type, torch.bfloat16, enabled=x.is_cuda):
        for i in range(0, len(x), batch):
            chunk = x[i : i + batch]
            logits = [net(chunk).float(), net(torch.flip(chunk, dims=[3])).float()]
            out.append(torch.stack([torch.softmax(z, 1) for z in logits]).mean(0))
    return torch.cat(out).cpu().numpy()


def train(args: argparse.Namespace) -> dict:
    import torch

    started = time.monotonic()
    from training.data import stratified_split
    from training.teachers import publictest_figures, save

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    packed = unpack(args.faces)
    names, images, labels, votes = (packed[k] for k in ("names", "images", "labels", "votes"))
    train_rows = np.flatnonzero([n.startswith("train/") for n in names])
    if args.limit:
        keep, _ = stratified_split(labels[train_rows], 1 - args.limit / len(train_rows), 0)
        train_rows = train_rows[keep]
    fit, val = (train_rows[i] for i in stratified_split(labels[train_rows], 0.1, VAL_SEED))
    targets = ferplus.mixed_targets(labels, votes, args.fer2013_weight)
    plurality = ferplus.plurality(votes)
    val = val[plurality[val] != ferplus.NOT_SCORED]  # scored against the FER+ plurality

    x_all = torch.from_numpy(images).to(dev).float().div_(127.5).sub_(1).unsqueeze(1)
    y_fit = torch.from_numpy(targets[fit]).to(dev)
    fit_rows = torch.from_numpy(fit).to(dev)
    # channels_last: faster convolutions on the GPU (its backward crashes PyTorch's CPU build)
    layout = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    net = resnet18(args.width).to(dev).to(memory_format=layout)
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest}],
        lr=args.learning_rate,
        momentum=0.9,
        nesterov=True,
    )
    generator = torch.Generator(dev).manual_seed(args.seed)
    budget = args.budget_s - (time.monotonic() - started) - args.reserve_s
    log.info(
        "%d faces to fit, %d to validate on %s; %.0f s to train", len(fit), len(val), dev, budget
    )
    best, best_state, history = -1.0, None, []
    t0 = time.monotonic()
    epoch = 0
    while epoch < args.max_epochs and (epoch == 0 or time.monotonic() - t0 < budget):
        net.train()
        order = torch.randperm(len(fit), device=dev, generator=generator)
        losses = []
        for k in range(0, len(fit) - args.batch_size + 1, args.batch_size):
            elapsed = time.monotonic() - t0
            if elapsed >= budget:
                break
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(elapsed, budget, args.learning_rate, args.warmup_s)
            index = order[k : k + args.batch_size]
            x = augment(x_all[fit_rows[index]], generator)
            x = x.contiguous(memory_format=layout)
            with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
                logits = net(x).float()
            loss = -(y_fit[index] * torch.log_softmax(logits, 1)).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        epoch += 1
        val_scores = predict(net, x_all[torch.from_numpy(val).to(dev)])
        accuracy = float((val_scores.argmax(1) == plurality[val]).mean())
        loss_mean = float(torch.stack(losses).mean()) if losses else float("nan")
        seconds = round(time.monotonic() - t0, 1)
        history.append(
            {
                "epoch": epoch,
                "seconds": seconds,
                "loss": loss_mean,
                "val_ferplus": round(accuracy, 4),
            }
        )
        log.info("epoch %d: %s", epoch, json.dumps(history[-1]))
        if accuracy > best:
            best, best_state = accuracy, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    scores = predict(net, x_all)
    args.out.mkdir(parents=True, exist_ok=True)
    save(args.out / f"{NAME}.npz", names, scores)
    test = np.array([n.startswith("test/") for n in names])
    record = {
        "network": f"ResNet-18 (3×3 stem, no max-pooling, width {args.width}), 48×48 grey, "
        f"{sum(p.numel() for p in net.parameters())} parameters",
        "targets": f"FER2013 label × {args.fer2013_weight} + FER+ votes × "
        f"{1 - args.fer2013_weight:g}",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU",
        "epochs": epoch,
        "best_epoch": 1 + max(range(len(history)), key=lambda i: history[i]["val_ferplus"]),
        "val_ferplus_accuracy": round(best, 4),
        "seconds": round(time.monotonic() - started, 1),
        "limit": args.limit,
        "history": history,
        "publictest": publictest_figures(scores[test], labels[test], plurality[test]),
        "file": f"{NAME}.npz",
    }
    (args.out / f"{NAME}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))
    log.info("PublicTest: %s", json.dumps(record["publictest"]))
    return record


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    packing = sub.add_parser("pack", help="pack the faces for the GPU machine")
    packing.add_argument("--data", required=True, type=Path, help="Kaggle root with ferplus.csv")
    packing.add_argument("--out", type=Path, default=PACKED)
    packing.add_argument("--cache-dir", type=Path, default=None)
    training = sub.add_parser("train", help="train the teacher and write its teacher file")
    training.add_argument("--faces", type=Path, default=PACKED)
    training.add_argument("--out", type=Path, required=True, help="folder for the teacher file")
    training.add_argument("--budget-s", type=float, default=420, help="whole run, seconds")
    training.add_argument("--reserve-s", type=float, default=20, help="kept for the scoring")
    training.add_argument("--warmup-s", type=float, default=10)
    training.add_argument("--max-epochs", type=int, default=1000)
    training.add_argument("--batch-size", type=int, default=128)
    training.add_argument("--learning-rate", type=float, default=0.05)
    training.add_argument("--weight-decay", type=float, default=5e-4)
    training.add_argument("--fer2013-weight", type=float, default=0.0)
    training.add_argument("--width", type=int, default=64, help="first stage's channels")
    training.add_argument("--limit", type=int, default=0, help="train on N faces only (tests)")
    training.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.command == "pack":
        pack(args.data, args.out, args.cache_dir)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
