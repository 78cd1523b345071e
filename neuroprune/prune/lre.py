"""LRE: linear-regression estimate of SynOps after fine-tuning.

Firing rates move while a pruned network is fine-tuned, so the SynOps measured right
after pruning mislead. SPEAR samples pruned networks, measures SynOps before and after
fine-tuning, and fits ``after ~= w * before + b``; the search then judges candidates by
the predicted final SynOps. SynOps here are ratios to the dense network's SynOps on the
same inputs (so ``w`` and ``b`` carry over between data subsets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neuroprune.errors import PruneError

__all__ = ["LREStats", "LinearSynOpsEstimator"]


@dataclass(frozen=True)
class LREStats:
    """Fit quality: R^2 on the fit samples and mean/max relative error on held-out ones."""

    weight: float
    bias: float
    r2: float
    samples: int
    holdout_samples: int
    holdout_mean_rel_error: float
    holdout_max_rel_error: float

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class LinearSynOpsEstimator:
    """``after = weight * before + bias`` fitted by least squares."""

    weight: float = 1.0
    bias: float = 0.0
    before: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)
    stats: LREStats | None = None

    def add(self, before: float, after: float) -> None:
        self.before.append(float(before))
        self.after.append(float(after))

    def fit(self, holdout_fraction: float = 0.25, seed: int = 0) -> LREStats:
        """Fit on a random part of the samples, report the error on the rest, then refit
        on all samples (the estimate used by the search)."""
        n = len(self.before)
        if n < 3:
            raise PruneError(f"LRE needs at least 3 samples to fit, has {n}")
        before, after = np.asarray(self.before), np.asarray(self.after)
        order = np.random.default_rng(seed).permutation(n)
        holdout = max(1, int(round(n * holdout_fraction))) if n >= 6 else 0
        test, train = order[:holdout], order[holdout:]
        w, b = self._solve(before[train], after[train])
        if holdout:
            predicted = w * before[test] + b
            rel = np.abs(predicted - after[test]) / np.maximum(np.abs(after[test]), 1e-12)
            mean_rel, max_rel = float(rel.mean()), float(rel.max())
        else:
            mean_rel = max_rel = float("nan")
        self.weight, self.bias = self._solve(before, after)
        fitted = self.weight * before + self.bias
        total = float(((after - after.mean()) ** 2).sum())
        r2 = 1.0 - float(((after - fitted) ** 2).sum()) / total if total > 0 else 1.0
        self.stats = LREStats(self.weight, self.bias, r2, n, holdout, mean_rel, max_rel)
        return self.stats

    @staticmethod
    def _solve(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
        if np.ptp(before) == 0:  # all samples alike: only a ratio can be learned
            return float(after.mean() / max(before.mean(), 1e-12)), 0.0
        design = np.stack([before, np.ones_like(before)], axis=1)
        (w, b), *_ = np.linalg.lstsq(design, after, rcond=None)
        return float(w), float(b)

    def predict(self, before: float) -> float:
        """Predicted SynOps (ratio) after fine-tuning for ``before``."""
        return self.weight * float(before) + self.bias

    def state_dict(self) -> dict:
        return {"weight": self.weight, "bias": self.bias, "before": list(self.before), "after": list(self.after),
                "stats": None if self.stats is None else self.stats.to_dict()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "LinearSynOpsEstimator":
        stats = None if state.get("stats") is None else LREStats(**state["stats"])
        return cls(state["weight"], state["bias"], list(state["before"]), list(state["after"]), stats)
