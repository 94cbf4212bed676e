"""The parity gate: does every exported format give the Keras model's answers?

Each format's probabilities on the same real test images are compared with
the Keras model's: max and mean |Δ probability|, top-1 agreement, and
accuracy on those images. Thresholds are chosen by the format's precision
(fp32 must match, fp16 must agree, int8 must keep its accuracy) and can be
overridden per precision or per format. An export is blessed only when every
requested format converted and passed.

Agreement and accuracy are proportions over a sample of images, so they are
judged with 95% intervals (``export.parity_stats``): a format fails when its
estimate misses the limit *and* chance cannot explain it (agreement: the
interval lies below the limit; accuracy: the paired interval of the drop lies
above zero). A format whose estimate misses but whose sample cannot decide
passes with a warning that says so; every verdict names its image count.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from export.formats import FORMATS, PRECISIONS
from export.parity_stats import PairedAccuracy, agreement_interval


@dataclass(frozen=True)
class Thresholds:
    """Bounds one format must meet; ``None`` skips that check."""

    max_abs_diff: float | None = None  # largest |Δ probability| over all images and classes
    min_top1_agreement: float | None = None  # fraction of images whose top-1 class equals Keras'
    max_accuracy_drop: float | None = None  # percentage points below the Keras model's accuracy

    def as_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(max_abs_diff=1e-4, min_top1_agreement=1.0),
    "fp16": Thresholds(min_top1_agreement=0.995),
    "int8": Thresholds(max_accuracy_drop=1.0),
}
METRICS = tuple(f.name for f in dataclasses.fields(Thresholds))


class ThresholdError(ValueError):
    """A malformed ``--threshold`` override."""


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, float | None]]:
    """``["int8.max_accuracy_drop=2", "onnx-fp16.min_top1_agreement=none"]`` -> {target: {metric: value}}.

    A target is a precision (fp32, fp16, int8) or a format name; ``none`` turns a check off.
    """
    overrides: dict[str, dict[str, float | None]] = {}
    for item in items:
        target, dot, rest = str(item).partition(".")
        metric, equals, text = rest.partition("=")
        if not dot or not equals:
            raise ThresholdError(f"threshold {item!r} must look like TARGET.METRIC=VALUE, e.g. int8.max_accuracy_drop=2")
        if target not in PRECISIONS and target not in FORMATS:
            raise ThresholdError(f"threshold {item!r}: unknown target {target!r}; use a precision "
                                 f"({', '.join(PRECISIONS)}) or a format ({', '.join(FORMATS)})")
        if metric not in METRICS:
            raise ThresholdError(f"threshold {item!r}: unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        value: float | None
        if text.strip().lower() == "none":
            value = None
        else:
            try:
                value = float(text)
            except ValueError:
                raise ThresholdError(f"threshold {item!r}: {text!r} is not a number or 'none'") from None
            if not math.isfinite(value) or value < 0 or (metric == "min_top1_agreement" and value > 1):
                raise ThresholdError(f"threshold {item!r}: {metric} must be a finite number >= 0"
                                     + (" and <= 1" if metric == "min_top1_agreement" else ""))
        overrides.setdefault(target, {})[metric] = value
    return overrides


def thresholds_for(format_name: str, overrides: dict[str, dict[str, float | None]] | None = None) -> Thresholds:
    """The precision's defaults, then the precision's overrides, then the format's own."""
    overrides = overrides or {}
    precision = FORMATS[format_name].precision
    values = DEFAULT_THRESHOLDS[precision].as_dict()
    values.update(overrides.get(precision, {}))
    values.update(overrides.get(format_name, {}))
    return Thresholds(**values)


@dataclass
class FormatParity:
    """One format against the Keras model on the same images."""

    format: str
    precision: str
    images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    accuracy: float
    reference_accuracy: float
    thresholds: Thresholds
    paired: PairedAccuracy = PairedAccuracy(0, 0, 0)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # passed, but on too few images to be sure

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def accuracy_drop_points(self) -> float:
        return 100.0 * (self.reference_accuracy - self.accuracy)

    @property
    def agreeing(self) -> int:
        return round(self.top1_agreement * self.images)

    def as_dict(self) -> dict:
        return {"format": self.format, "precision": self.precision, "images": self.images,
                "max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff,
                "top1_agreement": self.top1_agreement,
                "top1_agreement_interval_95": list(agreement_interval(self.agreeing, self.images)),
                "accuracy": self.accuracy, "reference_accuracy": self.reference_accuracy,
                "accuracy_drop_points": self.accuracy_drop_points,
                "accuracy_drop_interval_95": list(self.paired.drop_interval()),
                "images_lost": self.paired.lost, "images_gained": self.paired.gained,
                "thresholds": self.thresholds.as_dict(), "passed": self.passed, "failures": list(self.failures),
                "warnings": list(self.warnings)}


def compare(format_name: str, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray,
            thresholds: Thresholds) -> FormatParity:
    """Measure ``candidate`` probabilities against ``reference`` (Keras) and check ``thresholds``."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    labels = np.asarray(labels)
    if candidate.shape != reference.shape:
        raise ValueError(f"{format_name}: output shape {candidate.shape} differs from the Keras model's "
                         f"{reference.shape}")
    difference = np.abs(candidate - reference)
    finite = bool(np.isfinite(candidate).all())
    reference_right = reference.argmax(axis=1) == labels
    candidate_right = candidate.argmax(axis=1) == labels
    result = FormatParity(
        format=format_name, precision=FORMATS[format_name].precision, images=len(reference),
        max_abs_diff=float(difference.max()) if finite else math.inf,
        mean_abs_diff=float(difference.mean()) if finite else math.inf,
        top1_agreement=float(np.mean(candidate.argmax(axis=1) == reference.argmax(axis=1))),
        accuracy=float(np.mean(candidate_right)), reference_accuracy=float(np.mean(reference_right)),
        thresholds=thresholds, paired=PairedAccuracy.of(reference_right, candidate_right))
    if not finite:
        result.failures.append(f"{format_name}: outputs contain NaN or infinity")
    if thresholds.max_abs_diff is not None and result.max_abs_diff > thresholds.max_abs_diff:
        result.failures.append(f"{format_name}: max |Δp| {result.max_abs_diff:.3g} exceeds max_abs_diff "
                               f"{thresholds.max_abs_diff:g} (by {result.max_abs_diff - thresholds.max_abs_diff:.3g})")
    _check_agreement(result)
    _check_accuracy_drop(result)
    return result


def _check_agreement(result: FormatParity) -> None:
    """Fails when agreement is below the limit beyond chance: its 95% interval lies wholly below.

    A limit of 1 (fp32) fails on any disagreement: every interval of a rate under 1 ends under 1.
    """
    limit = result.thresholds.min_top1_agreement
    if limit is None or result.top1_agreement >= limit:
        return
    low, high = agreement_interval(result.agreeing, result.images)
    detail = (f"top-1 agreement {result.top1_agreement:.4f} is below min_top1_agreement {limit:g} "
              f"({result.images - result.agreeing} of {result.images} images differ; 95% interval {low:.4f} to {high:.4f})")
    if high < limit:
        result.failures.append(f"{result.format}: {detail}")
    else:
        result.warnings.append(f"{result.format} passes on too few images to decide: {detail}, which still "
                               "reaches the limit")


def _check_accuracy_drop(result: FormatParity) -> None:
    """Fails when the drop exceeds the limit and the format is worse than Keras beyond chance (paired interval
    above zero); a drop over the limit that chance explains passes with a warning."""
    limit = result.thresholds.max_accuracy_drop
    drop = result.accuracy_drop_points
    if limit is None or drop <= limit:
        return
    low, high = result.paired.drop_interval()
    detail = (f"accuracy {result.accuracy:.4f} is {drop:.2f} points below the Keras model's "
              f"{result.reference_accuracy:.4f} ({result.paired.lost} images lost, {result.paired.gained} gained of "
              f"{result.images}; 95% interval {low:.2f} to {high:.2f} points)")
    if low > 0:
        result.failures.append(f"{result.format}: {detail}, more than max_accuracy_drop {limit:g}")
    else:
        result.warnings.append(f"{result.format} passes on too few images to decide: {detail}; that is more than "
                               f"max_accuracy_drop {limit:g}, but chance explains it")


@dataclass
class Verdict:
    """Blessed when every requested format converted, ran, and passed its thresholds."""

    results: dict[str, FormatParity]
    failures: dict[str, str]  # format -> why it could not be converted or run
    images: int
    split: str

    @property
    def blessed(self) -> bool:
        return not self.failures and all(r.passed for r in self.results.values())

    @property
    def reasons(self) -> list[str]:
        reasons = [f"{name}: {error.splitlines()[0] if error else 'failed with no message'}"
                   for name, error in self.failures.items()]
        for result in self.results.values():
            reasons.extend(result.failures)
        return reasons

    @property
    def warnings(self) -> list[str]:
        """Passes that rest on too few images, and a parity set too small for the limits it is held to."""
        warnings = [w for result in self.results.values() for w in result.warnings]
        small = self.images_too_few()
        return ([small] if small else []) + warnings

    def images_too_few(self) -> str | None:
        """A sentence when one image moves accuracy or agreement by more than the tightest limit."""
        if not self.images:
            return None
        drops = [r.thresholds.max_accuracy_drop for r in self.results.values()
                 if r.thresholds.max_accuracy_drop is not None]
        agreements = [r.thresholds.min_top1_agreement for r in self.results.values()
                      if r.thresholds.min_top1_agreement is not None and r.thresholds.min_top1_agreement < 1]
        one_image = 100.0 / self.images
        limits = []
        if drops and one_image > min(drops):
            limits.append(f"max_accuracy_drop {min(drops):g} points")
        if agreements and 1.0 / self.images > 1 - max(agreements):
            limits.append(f"min_top1_agreement {max(agreements):g}")
        if not limits:
            return None
        return (f"the parity gate rests on {self.images} {self.split} images: one image is {one_image:.2g} points, "
                f"more than {' and '.join(limits)} allow, so only gross differences can fail; more test images "
                "(or --parity-images, when the split has them) make the verdict sharper")

    def as_dict(self) -> dict:
        return {"blessed": self.blessed, "reference": "keras", "images": self.images, "split": self.split,
                "formats": {name: result.as_dict() for name, result in self.results.items()},
                "failures": dict(self.failures), "reasons": self.reasons, "warnings": self.warnings}
