"""Bootstrap confidence intervals: of a mean, and of the difference of two methods on the same images; and how a results
file writes one."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PairedComparison", "paired_bootstrap", "ci_text", "MeanCI", "mean_ci"]


@dataclass
class PairedComparison:
    """``mean(a) - mean(b)`` and ``mean(a) / mean(b)`` with percentile bootstrap intervals."""

    diff: float
    diff_lo: float
    diff_hi: float
    ratio: float
    ratio_lo: float
    ratio_hi: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the difference's interval lies strictly on one side of zero."""
        return self.diff_lo > 0 or self.diff_hi < 0


def paired_bootstrap(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> PairedComparison:
    """Percentile bootstrap of the mean difference and mean ratio of paired samples ``a``, ``b`` ``(N,)``.

    Each resample draws N image indices with replacement and uses the same indices for ``a`` and
    ``b`` (the pairing removes the between-image variance both methods share). Pairs with a NaN in
    either are dropped first. Deterministic for ``seed``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of one length, got {a.shape} and {b.shape}")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if len(a) < 2:
        raise ValueError("a paired bootstrap needs at least 2 complete pairs")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    ma, mb = a[idx].mean(axis=1), b[idx].mean(axis=1)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    d_lo, d_hi = np.percentile(ma - mb, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_lo, r_hi = np.percentile(ma / mb, q)
        ratio = a.mean() / b.mean()
    return PairedComparison(float(a.mean() - b.mean()), float(d_lo), float(d_hi), float(ratio), float(r_lo),
                            float(r_hi), len(a))


def ci_text(r: dict, digits: int = 3, star: bool = False) -> str:
    """A paired comparison (:class:`PairedComparison`'s fields as a dict) as ``+diff [+lo, +hi]``, with
    ``*`` when ``star`` and the interval excludes zero."""
    mark = "*" if star and (r["diff_lo"] > 0 or r["diff_hi"] < 0) else ""
    return f"{r['diff']:+.{digits}f} [{r['diff_lo']:+.{digits}f}, {r['diff_hi']:+.{digits}f}]{mark}"


@dataclass
class MeanCI:
    """``mean(a)`` with a percentile bootstrap interval ``[lo, hi]`` over ``n`` values."""

    mean: float
    lo: float
    hi: float
    n: int


def mean_ci(a, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> MeanCI:
    """Percentile bootstrap interval of the mean of ``a`` ``(N,)`` (NaNs dropped first; a single value gives
    an interval of zero width). Deterministic for ``seed``."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"a must be 1-D, got shape {a.shape}")
    a = a[~np.isnan(a)]
    if len(a) == 0:
        raise ValueError("the mean of no values has no interval")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    means = a[np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1)
    lo, hi = np.percentile(means, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return MeanCI(float(a.mean()), float(lo), float(hi), len(a))
