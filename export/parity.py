"""The parity gate: does every exported format give the Keras model's answers?

Each format's probabilities on the same real test images are compared with
the Keras model's: max and mean |Δ probability|, top-1 agreement, and
accuracy on those images. Thresholds are chosen by the format's precision
(fp32 must match, fp16 must agree, int8 must keep its accuracy) and can be
overridden per precision or per format. An export is blessed only when every
requested format converted and passed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from export.formats import FORMATS, PRECISIONS


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
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def accuracy_drop_points(self) -> float:
        return 100.0 * (self.reference_accuracy - self.accuracy)

    def as_dict(self) -> dict:
        return {"format": self.format, "precision": self.precision, "images": self.images,
                "max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff,
                "top1_agreement": self.top1_agreement, "accuracy": self.accuracy,
                "reference_accuracy": self.reference_accuracy, "accuracy_drop_points": self.accuracy_drop_points,
                "thresholds": self.thresholds.as_dict(), "passed": self.passed, "failures": list(self.failures)}


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
    result = FormatParity(
        format=format_name, precision=FORMATS[format_name].precision, images=len(reference),
        max_abs_diff=float(difference.max()) if finite else math.inf,
        mean_abs_diff=float(difference.mean()) if finite else math.inf,
        top1_agreement=float(np.mean(candidate.argmax(axis=1) == reference.argmax(axis=1))),
        accuracy=float(np.mean(candidate.argmax(axis=1) == labels)),
        reference_accuracy=float(np.mean(reference.argmax(axis=1) == labels)),
        thresholds=thresholds)
    if not finite:
        result.failures.append(f"{format_name}: outputs contain NaN or infinity")
    if thresholds.max_abs_diff is not None and result.max_abs_diff > thresholds.max_abs_diff:
        result.failures.append(f"{format_name}: max |Δp| {result.max_abs_diff:.3g} exceeds max_abs_diff "
                               f"{thresholds.max_abs_diff:g} (by {result.max_abs_diff - thresholds.max_abs_diff:.3g})")
    if thresholds.min_top1_agreement is not None and result.top1_agreement < thresholds.min_top1_agreement:
        result.failures.append(f"{format_name}: top-1 agreement {result.top1_agreement:.4f} is below "
                               f"min_top1_agreement {thresholds.min_top1_agreement:g} "
                               f"({_disagreeing(result)} of {result.images} images differ)")
    if thresholds.max_accuracy_drop is not None and result.accuracy_drop_points > thresholds.max_accuracy_drop:
        result.failures.append(f"{format_name}: accuracy {result.accuracy:.4f} is {result.accuracy_drop_points:.2f} "
                               f"points below the Keras model's {result.reference_accuracy:.4f}, more than "
                               f"max_accuracy_drop {thresholds.max_accuracy_drop:g}")
    return result


def _disagreeing(result: FormatParity) -> int:
    return round((1.0 - result.top1_agreement) * result.images)


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

    def as_dict(self) -> dict:
        return {"blessed": self.blessed, "reference": "keras", "images": self.images, "split": self.split,
                "formats": {name: result.as_dict() for name, result in self.results.items()},
                "failures": dict(self.failures), "reasons": self.reasons}
