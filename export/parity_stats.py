"""Confidence intervals for the parity gate's per-image outcomes, so a verdict on a few images is not noise.

A format and the Keras model answer the same images, so their accuracies are
compared pairwise: the images where exactly one of them is right carry the
difference (McNemar's pairs), and the interval for it is Agresti and Min's
for matched proportions. Agreement is a plain proportion with a Wilson score
interval, which stays inside [0, 1] and behaves on small counts where the
normal approximation does not. Pure arithmetic: no SciPy needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95%


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / trials``; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if successes == 0 else low), (1.0 if successes == trials else high)


@dataclass(frozen=True)
class PairedAccuracy:
    """The reference's and the candidate's correctness on the same images."""

    images: int
    lost: int  # the reference is right, the candidate wrong
    gained: int  # the candidate is right, the reference wrong

    @classmethod
    def of(cls, reference_right: np.ndarray, candidate_right: np.ndarray) -> PairedAccuracy:
        reference_right, candidate_right = np.asarray(reference_right, bool), np.asarray(candidate_right, bool)
        return cls(images=int(reference_right.size), lost=int(np.sum(reference_right & ~candidate_right)),
                   gained=int(np.sum(~reference_right & candidate_right)))

    @property
    def drop_points(self) -> float:
        return 100.0 * (self.lost - self.gained) / self.images if self.images else 0.0

    def drop_interval(self) -> tuple[float, float]:
        """95% interval of the accuracy drop in points: Agresti and Min's (2005) interval for matched proportions.

        Half an image is added to each cell of the 2x2 table of right and wrong,
        then the Wald interval of the paired difference is taken; it accounts for
        how often the two differ as well as for which way (an interval that only
        looks at the images where they differ ends at 3 lost of 256 = 1.17 points
        when no image is gained, as if no fourth loss were possible).
        """
        if not self.images:
            return 0.0, 0.0
        total = self.images + 2.0
        lost, gained = self.lost + 0.5, self.gained + 0.5
        difference = (lost - gained) / total
        spread = Z_95 * math.sqrt(max(0.0, (lost + gained) - (lost - gained) ** 2 / total)) / total
        return max(-100.0, 100.0 * (difference - spread)), min(100.0, 100.0 * (difference + spread))


def agreement_interval(agreeing: int, images: int) -> tuple[float, float]:
    """95% interval of the top-1 agreement rate."""
    return wilson_interval(agreeing, images)
