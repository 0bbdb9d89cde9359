"""Personal calibration: a small model on the emotion network's features, fitted on the device.

Pure numpy, no clock and no I/O except `CalibrationStore`'s one file and `load_reference`.
What is fitted is a correction to the shipped model's logits, in two steps:

    calibrated logits = log p_shipped + standardisation(features)
                        + ((features - mean) / scale) @ dW + db

The household standardisation is a cheap domain adaptation: a room's light and camera move
and shrink the features, and the household's samples measure how. Each feature is shifted and
rescaled so that the samples of each taught emotion have the mean and spread that the same
emotion has on ordinary faces (`Reference`, measured on Training faces when the model was
exported), and the shipped head reads the result. Then a multinomial logistic regression,
whose weights start at zero and are held there by an L2 penalty on (dW, db), corrects what
is left, so a handful of samples moves the model only as far as they justify. The loss is
summed over samples: more evidence, a larger move.

Both steps apply in full only to faces near one of the household's samples (within `reach`,
the typical distance between neighbouring samples) and fade out beyond, so the correction
never extrapolates to faces and light it has not seen: those keep the shipped behaviour.
Classes without a sample keep their shipped logits exactly (neither step touches their
columns). When the model exports no features, the log-probabilities serve as features and
there is no standardisation.

A grainy camera (a dim room, a small sensor) is met before either step: the faces of a teach
session are also read after noise reduction (`device.denoise`), and when the shipped model
reads those samples clearly better that way (`DENOISE_MARGIN`), the calibration is fitted on
the denoised readings and the household's faces are read denoised from then on.

Only features, the shipped probabilities and labels are ever kept: never an image.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from device.atomic import write_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """How far the correction moves and how far from the samples it reaches."""

    strength: float
    """L2 penalty on the correction. Inputs are scaled to unit mean norm and the loss is
    summed over samples, so the shipped model weighs about as much as a few samples per
    class: ten faces of a class already move it, one stray frame hardly does."""
    reach_quantile: float
    """The correction applies in full within this quantile of the distances from each sample
    to its nearest other sample."""
    fade: float
    """Beyond the reach it fades linearly to nothing over this fraction of the reach."""
    refinement: float | None = None
    """L2 penalty that holds the standardisation's per-feature scale and shift (in units of
    the reference's spread) near the moment-matched ones while they are refined to read the
    samples right (`refined`); None: no refinement."""


PLAIN = Settings(strength=4.0, reach_quantile=0.65, fade=0.5)
"""The logistic correction alone (no reference to standardise to)."""
STANDARDISED = Settings(strength=6.0, reach_quantile=0.65, fade=1.0, refinement=3.0)
"""After the standardisation, which has already done much of the moving. Both chosen on
Training faces: ``python -m training.household --split validation --tune``."""
REFINE_ITERATIONS = 100
REACH_SUBSAMPLE = 500  # samples whose nearest neighbour sets the reach (keeps the fit fast)
ITERATIONS = 400
TOLERANCE = 1e-6  # stop once no parameter moves more than this in a step
MAX_PER_CLASS = 300
"""Samples kept per class in the household store; the oldest go first."""
MIN_PROBABILITY = 1e-6
MAX_RESCALE = 2.0
"""The standardisation rescales a feature by at most this factor either way (a feature that
never fires on one side would otherwise be multiplied without bound)."""
STANDARDISE_FROM = 4
"""The light is judged across emotions: the standardisation needs samples of this many."""
DENOISE_MARGIN = 0.1
"""Nats: how much higher the mean log-probability of the samples' labels must be read denoised
than as they are before the calibration switches to denoised faces. Chosen on Training faces
(``training.household --split validation``): sensor noise clears it in every draw, the
noise-free households never do."""
STORE_FILE = "calibration.npz"
STORE_VERSION = 4
READABLE_VERSIONS = (2, 3, 4)
"""Version 2 files (no standardisation) keep their samples: they are refitted on load.
Version 3 files (no denoised readings) are used as they are."""


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, MIN_PROBABILITY, 1.0))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _largest_eigenvalue(gram: np.ndarray, steps: int = 50) -> float:
    """Of a symmetric positive semi-definite matrix, by power iteration (cheap, no LAPACK
    threads), with a margin for the iteration's underestimate."""
    vector = np.ones(gram.shape[0]) / np.sqrt(gram.shape[0])
    value = 0.0
    for _ in range(steps):
        product = gram @ vector
        value = float(np.linalg.norm(product))
        if value == 0.0:
            return 0.0
        vector = product / value
    return 1.05 * value


def unread(features: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The denoised reading of faces that were not read denoised: NaN, in the reading's shape."""
    return np.full_like(features, np.nan), np.full_like(probabilities, np.nan)


@dataclass(frozen=True)
class Samples:
    """Labelled examples: one row per face of a frame (features, never pixels)."""

    features: np.ndarray  # [n, F] float32
    probabilities: np.ndarray  # [n, C] what the shipped model said
    labels: np.ndarray  # [n] class index
    times: np.ndarray  # [n] when taken, seconds since the epoch: the oldest are dropped first
    denoised: Samples | None = None
    """The same faces read after noise reduction (same labels and times), NaN for those that
    were not (the device reads faces both ways only while it may need both:
    `device.teach.CalibrationService.wants_denoised`); None when none were."""

    @classmethod
    def empty(cls, feature_size: int, classes: int) -> Samples:
        nothing = (np.zeros((0, feature_size)), np.zeros((0, classes)))
        return cls.of(*nothing, [], [], denoised=nothing)

    @classmethod
    def of(
        cls,
        features: np.ndarray,
        probabilities: np.ndarray,
        labels: np.ndarray,
        times: np.ndarray,
        denoised: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Samples:
        """Samples from arrays; `denoised`: the features and probabilities of the denoised
        readings."""
        labels, times = np.asarray(labels, np.int64), np.asarray(times, np.float64)
        return cls(
            np.asarray(features, np.float32),
            np.asarray(probabilities, np.float32),
            labels,
            times,
            None if denoised is None else cls.of(*denoised, labels, times),
        )

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self, classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=classes).tolist()

    def select(self, rows: np.ndarray) -> Samples:
        return Samples(
            self.features[rows],
            self.probabilities[rows],
            self.labels[rows],
            self.times[rows],
            None if self.denoised is None else self.denoised.select(rows),
        )

    def read_both_ways(self) -> np.ndarray:
        """[n] bool: which samples have a denoised reading."""
        if self.denoised is None:
            return np.zeros(len(self), bool)
        return np.isfinite(self.denoised.features).all(axis=1)

    def _denoised_or_missing(self) -> Samples:
        if self.denoised is not None:
            return self.denoised
        return Samples.of(*unread(self.features, self.probabilities), self.labels, self.times)

    def plus(self, other: Samples) -> Samples:
        either = self.denoised is not None or other.denoised is not None
        return Samples(
            *(
                np.concatenate([a, b])
                for a, b in zip(
                    (self.features, self.probabilities, self.labels, self.times),
                    (other.features, other.probabilities, other.labels, other.times),
                    strict=True,
                )
            ),
            self._denoised_or_missing().plus(other._denoised_or_missing()) if either else None,
        )

    def capped(self, per_class: int = MAX_PER_CLASS) -> Samples:
        """At most `per_class` of each class, the newest; order otherwise kept."""
        keep = np.zeros(len(self), bool)
        for label in np.unique(self.labels):
            rows = np.flatnonzero(self.labels == label)
            newest = rows[np.argsort(self.times[rows], kind="stable")][-per_class:]
            keep[newest] = True
        return self.select(np.flatnonzero(keep))


@dataclass(frozen=True)
class Reference:
    """The shipped model on ordinary faces: its float head and, per emotion, the mean and
    variance of its features over class-balanced Training faces (written at export)."""

    weights: np.ndarray  # W [F, C]: shipped logits = features @ W + b
    bias: np.ndarray  # b [C]
    class_means: np.ndarray  # [C, F]
    class_variances: np.ndarray  # [C, F] within each emotion


def load_reference(model: Path) -> Reference | None:
    """The reference of an emotion model: its head file, as its JSON names it (`head.file`),
    with the feature statistics. None, and no standardisation, for a model without them."""
    try:
        meta = json.loads(model.with_suffix(".json").read_text())
        with np.load(model.parent / meta["head"]["file"], allow_pickle=False) as data:
            if "class_means" not in data.files:
                return None
            reference = Reference(
                data["W"], data["b"], data["class_means"], data["class_variances"]
            )
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as err:
        logger.warning("calibration: %s: no usable head file (%s): not standardising", model, err)
        return None
    features, classes = reference.weights.shape
    shapes = (reference.bias.shape, reference.class_means.shape, reference.class_variances.shape)
    if shapes != ((classes,), (classes, features), (classes, features)):
        logger.warning("calibration: %s: the head file's shapes disagree: not standardising", model)
        return None
    return reference


@dataclass(frozen=True)
class Standardisation:
    """The household's features moved to where the shipped head expects them: each feature
    shifted by `target - source` around `source` and rescaled by `ratio`."""

    source: np.ndarray  # [F] the household's mean over its taught emotions
    target: np.ndarray  # [F] the reference's mean over the same emotions
    ratio: np.ndarray  # [F] reference spread / household spread, within an emotion
    weights: np.ndarray  # the reference head, W [F, C]
    bias: np.ndarray  # b [C]
    taught: np.ndarray  # [C] 1.0 for emotions with samples; the others are left alone

    def correction(self, features: np.ndarray) -> np.ndarray:
        """The change in the head's log-probabilities, [..., C]; zero for untaught emotions."""
        features = np.asarray(features, np.float64)
        moved = (features - self.source) * self.ratio + self.target
        change = _log_softmax(moved @ self.weights + self.bias) - _log_softmax(
            features @ self.weights + self.bias
        )
        return change * self.taught


def standardisation(samples: Samples, reference: Reference | None) -> Standardisation | None:
    """How this household's light moves the features, from its samples (None without a
    reference, or with samples of fewer than `STANDARDISE_FROM` emotions)."""
    taught = np.unique(samples.labels)
    if reference is None or len(taught) < STANDARDISE_FROM:
        return None
    features = samples.features.astype(np.float64)
    rows = [features[samples.labels == label] for label in taught]
    spread = np.mean([row.var(axis=0) for row in rows], axis=0)
    wanted = reference.class_variances[taught].mean(axis=0)
    ratio = np.sqrt(wanted / np.maximum(spread, 1e-12))
    mask = np.zeros(len(reference.bias))
    mask[taught] = 1.0
    return Standardisation(
        np.mean([row.mean(axis=0) for row in rows], axis=0),
        reference.class_means[taught].mean(axis=0),
        np.clip(ratio, 1 / MAX_RESCALE, MAX_RESCALE),
        reference.weights.astype(np.float64),
        reference.bias.astype(np.float64),
        mask,
    )


def refined(
    standard: Standardisation, samples: Samples, reference: Reference, penalty: float
) -> Standardisation:
    """The standardisation with each feature's scale and shift refined to lower the shipped
    head's cross-entropy over the samples (taught emotions only; Nesterov's accelerated
    gradient), held near the moment-matched values by `penalty`: moments of a few faces per
    emotion are noisy, and this moves the features along the directions that decide the
    head's reading.

    With ``moved = (f - source) * ratio * exp(u) + target + v * spread``, the parameters are
    ``u`` (log scale) and ``v`` (shift); the step is the inverse of a bound on the loss's
    curvature, so it shrinks as samples accumulate and never diverges. The refined scale keeps
    within `MAX_RESCALE`.
    """
    features = samples.features.astype(np.float64)
    targets = np.eye(len(standard.bias))[samples.labels]
    centred = (features - standard.source) * standard.ratio
    spread = np.sqrt(reference.class_variances.mean(axis=0))
    head = standard.weights
    curvature = (
        0.5
        * np.linalg.norm(head, 2) ** 2
        * ((centred**2).sum(axis=0).max() + len(samples) * (spread**2).max())
    )
    smoothness = curvature + penalty
    root = np.sqrt(smoothness / penalty)
    momentum = (root - 1.0) / (root + 1.0)  # Nesterov's, as in `fit`
    params = np.zeros((2, features.shape[1]))  # u (log scale), v (shift)
    ahead = params.copy()
    for _ in range(REFINE_ITERATIONS):
        scaled = centred * np.exp(ahead[0])
        moved = scaled + standard.target + ahead[1] * spread
        error = (_softmax(moved @ head + standard.bias) - targets) * standard.taught
        towards = error @ head.T  # the loss's gradient with respect to the moved features
        gradient = np.stack([(towards * scaled).sum(axis=0), (towards * spread).sum(axis=0)])
        updated = ahead - (gradient + penalty * ahead) / smoothness
        ahead = updated + momentum * (updated - params)
        params = updated
    scale_change, shift = params
    return Standardisation(
        standard.source,
        standard.target + shift * spread,
        np.clip(standard.ratio * np.exp(scale_change), 1 / MAX_RESCALE, MAX_RESCALE),
        head,
        standard.bias,
        standard.taught,
    )


@dataclass(frozen=True)
class Calibration:
    """The fitted correction; `apply` turns the shipped probabilities into calibrated ones."""

    mean: np.ndarray  # [F]
    scale: float
    weights: np.ndarray  # dW [F, C]
    bias: np.ndarray  # db [C]
    anchors: np.ndarray  # [n, F] the samples, scaled like the inputs
    reach: float  # distance to the nearest anchor within which the correction applies in full
    fade: float  # then fading to nothing over this fraction of the reach
    standard: Standardisation | None = None
    denoise: bool = False  # read the household's faces denoised (`reads_better_denoised`)

    def reading(self, samples: Samples) -> Samples:
        """Of samples read both ways, the reading this calibration applies to."""
        if not self.denoise:
            return samples
        if not samples.read_both_ways().all():
            raise ValueError("this calibration reads faces denoised: some samples were not")
        return samples.denoised  # type: ignore[return-value]

    def scaled(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, np.float64) - self.mean) / self.scale

    def logits(self, features: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        inputs = self.scaled(features)
        distance = nearest_distance(np.atleast_2d(inputs), self.anchors).reshape(
            (*inputs.shape[:-1], 1)
        )
        fade = max(self.reach * self.fade, 1e-9)  # no reach (under two samples): no correction
        weight = np.clip((self.reach * (1 + self.fade) - distance) / fade, 0.0, 1.0)
        correction = inputs @ self.weights + self.bias
        if self.standard is not None:
            correction = correction + self.standard.correction(features)
        return log_probabilities(probabilities) + weight * correction

    def apply(self, features: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for one face ([F], [C]) or many ([n, F], [n, C])."""
        return _softmax(self.logits(features, probabilities))


def nearest_distance(
    points: np.ndarray, anchors: np.ndarray, exclude_self: bool = False
) -> np.ndarray:
    """For each row of `points`, the distance to its nearest row of `anchors`."""
    if not len(anchors):
        return np.full(len(points), np.inf)
    squared = (points**2).sum(1)[:, None] + (anchors**2).sum(1)[None, :] - 2 * points @ anchors.T
    if exclude_self:  # points are the first rows of anchors
        squared[np.arange(len(points)), np.arange(len(points))] = np.inf
    return np.sqrt(np.clip(squared.min(axis=1), 0.0, None))


def _label_log_likelihood(samples: Samples) -> float:
    rows = np.arange(len(samples))
    return float(log_probabilities(samples.probabilities[rows, samples.labels]).mean())


def reads_better_denoised(samples: Samples) -> bool:
    """Whether the shipped model reads the labels of the samples read both ways clearly
    better after noise reduction (by `DENOISE_MARGIN`)."""
    both = np.flatnonzero(samples.read_both_ways())
    if not len(both):
        return False
    read = samples.select(both)
    gain = _label_log_likelihood(read.denoised) - _label_log_likelihood(read)  # type: ignore[arg-type]
    return gain > DENOISE_MARGIN


def fit(
    samples: Samples,
    classes: int,
    settings: Settings | None = None,
    iterations: int = ITERATIONS,
    reference: Reference | None = None,
) -> Calibration:
    """The correction that best explains `samples`, held towards the shipped model (after
    the household standardisation, when a reference is given). `settings` default to
    `PLAIN`, or `STANDARDISED` after a standardisation.

    Convex (cross-entropy plus an L2 penalty): Nesterov's accelerated gradient with the
    step and momentum of its strong convexity converges in a few hundred cheap steps.
    """
    denoise = reads_better_denoised(samples)
    if denoise:  # fitted on the samples read denoised; the others were taken before the switch
        samples = samples.select(np.flatnonzero(samples.read_both_ways())).denoised  # type: ignore[assignment]
    standard = standardisation(samples, reference)
    if settings is None:
        settings = PLAIN if standard is None else STANDARDISED
    if standard is not None and reference is not None and settings.refinement is not None:
        standard = refined(standard, samples, reference, settings.refinement)
    strength = settings.strength
    features = samples.features.astype(np.float64)
    mean = features.mean(axis=0) if len(samples) else np.zeros(features.shape[1])
    centred = features - mean
    scale = float(np.sqrt((centred**2).sum(axis=1).mean())) if len(samples) else 1.0
    scale = scale if scale > 1e-9 else 1.0
    inputs = np.hstack([centred / scale, np.ones((len(samples), 1))])  # bias as a last input
    base = log_probabilities(samples.probabilities.astype(np.float64))
    if standard is not None:
        base = base + standard.correction(features)
    targets = np.eye(classes)[samples.labels]
    fitted = np.zeros(classes)
    fitted[np.unique(samples.labels)] = 1.0  # classes without samples keep the shipped logits
    params = np.zeros((inputs.shape[1], classes))
    if len(samples):
        # Softmax cross-entropy's curvature is at most 1/2 per sample in any direction.
        smoothness = 0.5 * _largest_eigenvalue(inputs.T @ inputs) + strength
        step = 1.0 / smoothness
        root = np.sqrt(smoothness / strength)
        momentum = (root - 1.0) / (root + 1.0)
        ahead = params.copy()
        for _ in range(iterations):
            gradient = inputs.T @ (_softmax(base + inputs @ ahead) - targets) + strength * ahead
            updated = ahead - step * gradient * fitted
            ahead = updated + momentum * (updated - params)
            moved = np.abs(updated - params).max()
            params = updated
            if moved < TOLERANCE:
                break
    anchors = inputs[:, :-1]
    reach = reach_of(anchors, settings.reach_quantile)
    return Calibration(
        mean, scale, params[:-1], params[-1], anchors, reach, settings.fade, standard, denoise
    )


def reach_of(anchors: np.ndarray, quantile: float) -> float:
    """How near a face must be to a sample to be corrected in full: a high quantile of the
    samples' distances to their nearest neighbour (0 with fewer than two samples)."""
    if len(anchors) < 2:
        return 0.0
    probe = anchors[:REACH_SUBSAMPLE]
    neighbours = nearest_distance(probe, anchors, exclude_self=True)
    return float(np.quantile(neighbours[np.isfinite(neighbours)], quantile))


@dataclass(frozen=True)
class Figures:
    """Accuracy and macro recall of the shipped model and of the calibrated one."""

    accuracy_before: float
    accuracy_after: float
    recall_before: float  # macro: the mean of per-class recalls, over classes with samples
    recall_after: float
    counts: list[int]

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "recall_before": self.recall_before,
            "recall_after": self.recall_after,
            "counts": self.counts,
            "samples": sum(self.counts),
        }


def macro_recall(labels: np.ndarray, predicted: np.ndarray) -> float:
    recalls = [float(np.mean(predicted[labels == c] == c)) for c in np.unique(labels)]
    return float(np.mean(recalls)) if recalls else 0.0


def figures(labels: np.ndarray, before: np.ndarray, after: np.ndarray, classes: int) -> Figures:
    """Figures from true labels and the predicted classes before and after calibration."""
    if len(labels) == 0:
        return Figures(0.0, 0.0, 0.0, 0.0, [0] * classes)
    return Figures(
        float(np.mean(before == labels)),
        float(np.mean(after == labels)),
        macro_recall(labels, before),
        macro_recall(labels, after),
        np.bincount(labels, minlength=classes).tolist(),
    )


def blocked_folds(samples: Samples, folds: int) -> np.ndarray:
    """A fold number per sample: each class's samples, in time order, cut into `folds`
    consecutive blocks, so neighbouring frames of one face never sit on both sides."""
    fold = np.zeros(len(samples), np.int64)
    for label in np.unique(samples.labels):
        rows = np.flatnonzero(samples.labels == label)
        rows = rows[np.argsort(samples.times[rows], kind="stable")]
        fold[rows] = np.arange(len(rows)) * folds // len(rows)
    return fold


def evaluate_cv(
    samples: Samples,
    classes: int,
    folds: int = 5,
    settings: Settings | None = None,
    reference: Reference | None = None,
) -> Figures:
    """Before/after figures on `samples`, each judged by a calibration fitted without its
    block (blocked cross-validation)."""
    before = samples.probabilities.argmax(axis=1)
    after = before.copy()
    assigned = blocked_folds(samples, folds)
    for fold in range(folds):
        held = assigned == fold
        if not held.any():
            continue
        calibration = fit(
            samples.select(np.flatnonzero(~held)), classes, settings, reference=reference
        )
        kept = calibration.reading(samples.select(np.flatnonzero(held)))
        after[held] = calibration.logits(kept.features, kept.probabilities).argmax(axis=1)
    return figures(samples.labels, before, after, classes)


@dataclass(frozen=True)
class Stored:
    """What the household store holds."""

    samples: Samples
    calibration: Calibration | None  # None: saved by an older version, to be refitted
    labels: tuple[str, ...]
    model_id: str  # the emotion model the features came from
    saved_at: float  # seconds since the epoch

    def counts(self) -> dict[str, int]:
        return dict(zip(self.labels, self.samples.counts(len(self.labels)), strict=True))


class StoreError(ValueError):
    """The calibration file is unreadable or not ours."""


class CalibrationStore:
    """The household calibration in `<state_dir>/calibration.npz` (0600, written atomically):
    parameters, sample features with their labels, times and the shipped probabilities (as
    read and denoised), the date, the counts per class and the model they belong to. Never an
    image."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / STORE_FILE

    def save(self, stored: Stored) -> None:
        calibration = stored.calibration
        if calibration is None:
            raise ValueError("nothing fitted to save")
        standard = calibration.standard
        meta = {
            "version": STORE_VERSION,
            "labels": list(stored.labels),
            "model_id": stored.model_id,
            "saved_at": stored.saved_at,
            "counts": stored.counts(),
            "scale": calibration.scale,
            "reach": calibration.reach,
            "fade": calibration.fade,
            "standardised": standard is not None,
            "denoise": calibration.denoise,
        }  # the anchors are the scaled features of the reading it applies to
        arrays = {
            f"standard_{field.name}": getattr(standard, field.name)
            for field in (fields(Standardisation) if standard is not None else ())
        }
        denoised = stored.samples.denoised
        if denoised is not None:
            arrays.update(
                denoised_features=denoised.features, denoised_probabilities=denoised.probabilities
            )
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            meta=np.array(json.dumps(meta)),
            features=stored.samples.features,
            probabilities=stored.samples.probabilities,
            labels=stored.samples.labels,
            times=stored.samples.times,
            mean=calibration.mean,
            weights=calibration.weights,
            bias=calibration.bias,
            **arrays,
        )
        write_atomic(self.path, buffer.getvalue())

    def load(self) -> Stored | None:
        """The stored calibration; None when there is none; StoreError when it is broken.
        A file of an older readable version comes back with its samples and no calibration."""
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                version = meta.get("version")
                if version not in READABLE_VERSIONS:
                    raise StoreError(f"{self.path}: unknown version {version!r}")
                denoised = None
                if "denoised_features" in data.files:
                    denoised = (data["denoised_features"], data["denoised_probabilities"])
                samples = Samples.of(
                    data["features"],
                    data["probabilities"],
                    data["labels"],
                    data["times"],
                    denoised,
                )
                calibration = None
                if version != 2:
                    scale = float(meta["scale"])
                    denoise = bool(meta.get("denoise", False))  # version 3: never
                    read = samples
                    if denoise:  # fitted on the samples read denoised
                        both = samples.select(np.flatnonzero(samples.read_both_ways()))
                        if not len(both):
                            raise StoreError(f"{self.path}: reads faces denoised but holds none")
                        read = both.denoised  # type: ignore[assignment]
                    anchors = (read.features.astype(np.float64) - data["mean"]) / scale
                    standard = None
                    if meta["standardised"]:
                        standard = Standardisation(
                            **{
                                field.name: data[f"standard_{field.name}"]
                                for field in fields(Standardisation)
                            }
                        )
                    calibration = Calibration(
                        data["mean"],
                        scale,
                        data["weights"],
                        data["bias"],
                        anchors,
                        float(meta["reach"]),
                        float(meta["fade"]),
                        standard,
                        denoise,
                    )
                return Stored(
                    samples,
                    calibration,
                    tuple(meta["labels"]),
                    str(meta["model_id"]),
                    float(meta["saved_at"]),
                )
        except FileNotFoundError:
            return None
        except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as err:
            if isinstance(err, StoreError):
                raise
            raise StoreError(f"{self.path}: unreadable: {err}") from err

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
