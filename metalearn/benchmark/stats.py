"""Statistics of a benchmark: paired differences, ranks, win/tie/loss and significance tests.

Everything here works on the two tidy tables the runner produces (see
:mod:`metalearn.benchmark.storage`): ``runs`` (one row per run) and ``curves`` (one row per run
and loop). Vocabulary:

- a *problem* is one ``(dataset, model, regime, batch_size)`` combination; the statistics are
  computed per problem and then over problems;
- a *setting* is one ``(model, regime, batch_size)`` combination; the functions taking ``by``
  repeat the over-problem statistics within each group of those columns (e.g.
  ``by=SETTING_KEYS``);
- runs of one problem with the same ``seed`` are *paired* (same split, initial labels and task
  model), so differences between strategies are taken seed by seed;
- *points* are metric values times 100 (an AULC of 0.873 is 87.3 points).

Failed runs (``status != "ok"``) never enter a mean, a rank or a test (they are not scored as
zero); :func:`failed_runs` lists them and :func:`strategy_summary` counts them. A difference
needs both runs of a pair to be ok.

Significance per problem is a paired test across seeds, by default the Wilcoxon signed-rank
test (``scipy.stats.wilcoxon``). Note that its exact two-sided p-value cannot go below
``2 / 2**n`` with ``n`` seeds: with 5 seeds or fewer no problem can be a win or a loss at
``alpha=0.05``; use at least 6 seeds (the default configuration has 10).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from metalearn.benchmark.config import ORACLE
from metalearn.exceptions import InvalidInputError

__all__ = [
    "PROBLEM_KEYS",
    "SETTING_KEYS",
    "COMPUTE_KEYS",
    "compute_front",
    "front_weights",
    "METRICS",
    "ORACLE",
    "RANDOM",
    "FriedmanResult",
    "labels_to_reach",
    "ok_runs",
    "failed_runs",
    "strategy_summary",
    "has_compute",
    "compute_summary",
    "paired_differences",
    "run_differences",
    "gap_closed",
    "rank_table",
    "mean_ranks",
    "overall_comparison",
    "critical_difference",
    "friedman_test",
    "nemenyi_groups",
    "paired_test",
    "min_wilcoxon_p",
    "holm_adjust",
    "nemenyi_p_values",
]

#: Columns that identify a problem.
PROBLEM_KEYS: tuple[str, ...] = ("dataset", "model", "regime", "batch_size")
#: Columns that identify a setting (a problem without its dataset).
SETTING_KEYS: tuple[str, ...] = ("model", "regime", "batch_size")
#: Columns that identify a compute setting: a setting across batch sizes, the axis along which
#: retrains are traded for labels (:func:`compute_summary`).
COMPUTE_KEYS: tuple[str, ...] = ("model", "regime")
#: Name of the random-sampling lower reference.
RANDOM = "random"
#: The runs table's metrics that every statistic here takes as ``metric``: scores in [0, 1],
#: higher is better. ``aulc_*`` is the trapezoidal area under the learning curve
#: (:func:`~metalearn.simulation.metrics.area_under_learning_curve`), the default;
#: ``step_aulc_*`` the area under the step curve, the score of the last model trained on at
#: most n labels (:func:`~metalearn.simulation.metrics.step_area_under_learning_curve`), which
#: charges a strategy for the labels it buys between retrains; results stored before it was
#: recorded have NaN there, and their runs count as without a score.
METRICS: tuple[str, ...] = (
    "aulc_accuracy", "aulc_macro_f1", "step_aulc_accuracy", "step_aulc_macro_f1", "final_accuracy", "final_macro_f1",
)

_PAIR_KEYS = (*PROBLEM_KEYS, "seed")
_RUN_KEYS = (*_PAIR_KEYS, "strategy")
_ZERO = 1e-12  # differences smaller than this (in metric units) are exact ties
_GAP_EPS = 1e-9

TestName = Literal["wilcoxon", "ttest"]


# --------------------------------------------------------------------------------------------
# Basics
# --------------------------------------------------------------------------------------------


def labels_to_reach(n_bought: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float], target: float) -> float:
    """Labels bought when a learning curve first reaches a target score.

    Parameters
    ----------
    n_bought : array-like of shape (n_points,)
        Labels bought at each point of the curve (increasing, 0 for the initial model).
    scores : array-like of shape (n_points,)
        Test score at each point.
    target : float
        Score to reach (e.g. 98% of the full-pool model's score).

    Returns
    -------
    float
        ``n_bought`` at the first point whose score is ``>= target``; NaN if no point reaches it
        within the curve, if the curve is empty, or if ``target`` is NaN. NaN scores never
        count as reaching the target.

    Raises
    ------
    InvalidInputError
        If ``n_bought`` and ``scores`` differ in length.
    """
    n = np.asarray(n_bought, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if n.shape != s.shape:
        raise InvalidInputError(f"n_bought and scores must have the same length, got {n.size} and {s.size}")
    target = float(target)
    if n.size == 0 or math.isnan(target):
        return float("nan")
    with np.errstate(invalid="ignore"):
        reached = np.flatnonzero(s >= target)
    return float(n[reached[0]]) if reached.size else float("nan")


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], what: str = "runs") -> None:
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{what} lacks the column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}")


def _dedupe(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run key: an ok row wins over a failed one, then the last row."""
    keys = list(_RUN_KEYS)
    if not runs.duplicated(keys).any():
        return runs
    warnings.warn(
        "runs has several rows for the same (dataset, model, regime, batch_size, seed, strategy); "
        "keeping one per run (an ok row if there is one, else the last)",
        RuntimeWarning,
        stacklevel=3,
    )
    order = runs.assign(_ok=(runs["status"] == "ok").astype(int), _pos=np.arange(len(runs)))
    order = order.sort_values(["_ok", "_pos"], kind="stable")
    return order.drop_duplicates(keys, keep="last").sort_values("_pos").drop(columns=["_ok", "_pos"])


def ok_runs(runs: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The successful runs (``status == "ok"``), optionally also requiring a finite ``metric``.

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.
    metric : str, optional
        A metric column that must be finite (NaN metrics are treated like a failure).

    Returns
    -------
    pandas.DataFrame
        A copy of the matching rows, one per run key.
    """
    cols = [*_RUN_KEYS, "status"] + ([metric] if metric else [])
    _check_columns(runs, cols)
    runs = _dedupe(runs)
    mask = runs["status"] == "ok"
    if metric:
        mask &= np.isfinite(pd.to_numeric(runs[metric], errors="coerce"))
    return runs.loc[mask].copy()


def failed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The failed runs, for the report: they are listed, never scored.

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id, dataset, model, regime, batch_size, seed, strategy, error``, one row per
        run whose status is not ``"ok"``, sorted by problem, strategy and seed.
    """
    _check_columns(runs, [*_RUN_KEYS, "status"])
    runs = _dedupe(runs)
    failed = runs.loc[runs["status"] != "ok"].copy()
    if "run_id" not in failed.columns:
        failed["run_id"] = ""
    if "error" not in failed.columns:
        failed["error"] = ""
    failed["error"] = failed["error"].fillna("").astype(str)
    cols = ["run_id", *PROBLEM_KEYS, "seed", "strategy", "error"]
    return failed.sort_values([*PROBLEM_KEYS, "strategy", "seed"])[cols].reset_index(drop=True)


def _score_family(metric: str) -> str:
    return "macro_f1" if "macro_f1" in metric else "accuracy"


# --------------------------------------------------------------------------------------------
# Tests and intervals
# --------------------------------------------------------------------------------------------


def min_wilcoxon_p(n: int) -> float:
    """Smallest two-sided p-value the exact Wilcoxon signed-rank test can give with ``n`` pairs.

    Parameters
    ----------
    n : int
        Number of non-zero paired differences.

    Returns
    -------
    float
        ``2 / 2**n`` (capped at 1); 1.0 for ``n <= 0``.
    """
    return 1.0 if n <= 0 else min(1.0, 2.0 / 2.0**n)


def paired_test(differences: np.ndarray | Sequence[float], test: TestName = "wilcoxon") -> float:
    """Two-sided p-value of "the paired differences are centred on zero".

    Parameters
    ----------
    differences : array-like
        Paired differences (NaN entries are dropped).
    test : {"wilcoxon", "ttest"}
        ``"wilcoxon"``: signed-rank test (``scipy.stats.wilcoxon``, zeros dropped as in
        Wilcoxon's original method, exact distribution for small samples without ties);
        ``"ttest"``: one-sample t-test (``scipy.stats.ttest_1samp``).

    Returns
    -------
    float
        The p-value, with these conventions:

        - fewer than 2 differences: NaN (no test is possible);
        - every difference is zero (``|d| < 1e-12``): 1.0 (no evidence of a difference);
        - t-test with identical non-zero differences (zero variance): 0.0.
    """
    d = np.asarray(differences, dtype=float).ravel()
    d = d[np.isfinite(d)]
    if d.size < 2:
        return float("nan")
    d = np.where(np.abs(d) < _ZERO, 0.0, d)
    if not np.any(d):
        return 1.0
    if test == "wilcoxon":
        # Zeros are dropped here rather than by scipy: the p-value is the same (zero_method
        # "wilcox"), but scipy would switch to a slow permutation test when it sees zeros.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(sps.wilcoxon(d[d != 0.0], zero_method="wilcox", alternative="two-sided").pvalue)
        return 1.0 if math.isnan(p) else p
    if test == "ttest":
        if np.ptp(d) == 0.0:
            return 0.0
        return float(sps.ttest_1samp(d, 0.0).pvalue)
    raise InvalidInputError(f"unknown test {test!r}; use 'wilcoxon' or 'ttest'")


def holm_adjust(p_values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries are left out).

    The same adjustment as ``statsmodels.stats.multitest.multipletests(method="holm")`` and
    scikit-posthocs' ``p_adjust="holm"``: the i-th smallest of m p-values becomes
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``. It controls the family-wise error rate
    without assuming the tests independent.

    Parameters
    ----------
    p_values : array-like of shape (n_tests,)

    Returns
    -------
    ndarray of shape (n_tests,)
        Adjusted p-values, NaN where the input is NaN.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if valid.size:
        order = valid[np.argsort(p[valid], kind="stable")]
        m = order.size
        stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
        out[order] = np.maximum.accumulate(stepped)
    return out


def _outcome(mean: float, p: float, alpha: float) -> str:
    if math.isnan(mean):
        return "n/a"
    if not math.isnan(p) and p < alpha:
        if mean > 0:
            return "win"
        if mean < 0:
            return "loss"
    return "tie"


# --------------------------------------------------------------------------------------------
# Per-strategy summary
# --------------------------------------------------------------------------------------------


def strategy_summary(
    runs: pd.DataFrame, metric: str = "aulc_accuracy", *, by: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per-strategy means over all ok runs (pooled over problems and seeds).

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.
    metric : str
        Main metric (a score in [0, 1]); the table is sorted by its mean, best first.
    by : sequence of str, optional
        Extra grouping columns, e.g. :data:`SETTING_KEYS` for one block per setting.

    Returns
    -------
    pandas.DataFrame
        One row per strategy (and ``by`` group), columns:

        - ``strategy``;
        - ``<metric>``, ``<metric>_std``: mean and standard deviation over ok runs, in points;
        - ``aulc_macro_f1``, ``final_accuracy``: means in points (a column equal to ``metric``
          is not repeated);
        - ``labels_to_98``: median labels bought to reach 98% of the full-pool score (the
          accuracy one, or the macro-F1 one for a macro-F1 metric), among runs that reached it;
        - ``reached_98``: fraction of ok runs that reached it;
        - ``query_ms``: mean wall time of one query in milliseconds;
        - ``n_ok``, ``n_failed``: number of ok and failed runs.

    Notes
    -----
    Pooled means mix problems; when a strategy failed on some runs its means cover other runs
    than the others'. :func:`overall_comparison` gives the paired, per-problem view.
    """
    by = list(by or [])
    _check_columns(runs, [*_RUN_KEYS, "status", *by])
    runs = _dedupe(runs)
    family = _score_family(metric)
    l98 = f"labels_to_98_{family}"
    group = [*by, "strategy"]
    ok = runs.loc[runs["status"] == "ok"]
    counts = runs.assign(_ok=runs["status"] == "ok").groupby(group, dropna=False)["_ok"].agg(["sum", "size"])
    out = pd.DataFrame(index=counts.index)
    if metric not in runs.columns:
        raise InvalidInputError(f"runs lacks the metric column {metric!r}")
    keys = [ok[g] for g in group]
    for col in [metric] + [c for c in ("aulc_macro_f1", "final_accuracy") if c != metric]:
        if col in ok.columns:
            values = pd.to_numeric(ok[col], errors="coerce") * 100.0
            out[col] = values.groupby(keys, dropna=False).mean()
            if col == metric:
                out[f"{metric}_std"] = values.groupby(keys, dropna=False).std(ddof=1)
    if l98 in ok.columns:
        reached = pd.to_numeric(ok[l98], errors="coerce")
        out["labels_to_98"] = reached.groupby(keys, dropna=False).median()
        out["reached_98"] = reached.notna().groupby(keys, dropna=False).mean()
    if "query_seconds_mean" in ok.columns:
        query_ms = pd.to_numeric(ok["query_seconds_mean"], errors="coerce") * 1000.0
        out["query_ms"] = query_ms.groupby(keys, dropna=False).mean()
    out["n_ok"] = counts["sum"].astype(int)
    out["n_failed"] = (counts["size"] - counts["sum"]).astype(int)
    out = out.reset_index()
    sort = [*by, metric] if by else [metric]
    return out.sort_values(sort, ascending=[True] * len(by) + [False], na_position="last").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Compute: fits, seconds and the step-curve AULC
# --------------------------------------------------------------------------------------------


def has_compute(runs: pd.DataFrame) -> bool:
    """Whether some ok run of ``runs`` recorded its compute (a finite ``n_fits``).

    Results stored before fits were counted have no ``n_fits`` column, or only NaN in it.
    """
    if "n_fits" not in runs.columns or "status" not in runs.columns:
        return False
    fits = pd.to_numeric(runs.loc[runs["status"] == "ok", "n_fits"], errors="coerce")
    return bool(np.isfinite(fits).any())


def compute_summary(runs: pd.DataFrame, metric: str = "step_aulc_accuracy") -> pd.DataFrame:
    """Per compute setting, strategy and batch size: mean fits, seconds and score per run.

    Pooled over the datasets and seeds of each ``(model, regime)`` setting
    (:data:`COMPUTE_KEYS`), over the ok runs that recorded their compute and have a finite
    ``metric``; the batch size stays a row key, so a strategy run at several batch sizes
    gives one row per batch size (the points of its fits-vs-score front).

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table, with the compute columns ``n_fits``, ``fit_seconds`` and
        ``query_seconds_total``.
    metric : str
        Score column, one of :data:`METRICS` (the step-curve AULC by default).

    Returns
    -------
    pandas.DataFrame
        Columns ``model, regime, strategy, batch_size, n_runs``, ``n_fits`` (mean task-model
        fits per run), ``fit_seconds``, ``query_seconds`` (mean seconds per run spent in fits
        and in queries), ``compute_seconds`` (their sum) and ``<metric>`` (mean, in points),
        sorted by setting, strategy and batch size; empty when no run recorded its compute.
    """
    if metric not in METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    group = [*COMPUTE_KEYS, "strategy", "batch_size"]
    columns = [*group, "n_runs", "n_fits", "fit_seconds", "query_seconds", "compute_seconds", metric]
    if not has_compute(runs):
        return pd.DataFrame(columns=columns)
    _check_columns(runs, ["n_fits", "fit_seconds", "query_seconds_total", metric])
    ok = ok_runs(runs, metric)
    ok = ok.loc[np.isfinite(pd.to_numeric(ok["n_fits"], errors="coerce"))]
    if ok.empty:
        return pd.DataFrame(columns=columns)
    values = pd.DataFrame(
        {
            **{c: ok[c] for c in group},
            "n_fits": pd.to_numeric(ok["n_fits"], errors="coerce"),
            "fit_seconds": pd.to_numeric(ok["fit_seconds"], errors="coerce"),
            "query_seconds": pd.to_numeric(ok["query_seconds_total"], errors="coerce"),
            metric: pd.to_numeric(ok[metric], errors="coerce") * 100.0,
        }
    )
    values["compute_seconds"] = values["fit_seconds"] + values["query_seconds"]
    grouped = values.groupby(group, sort=True, dropna=False)
    out = grouped[["n_fits", "fit_seconds", "query_seconds", "compute_seconds", metric]].mean()
    out.insert(0, "n_runs", grouped.size())
    return out.reset_index()[columns]


def compute_front(fits: Sequence[float], scores: Sequence[float]) -> np.ndarray:
    """Indices of the points on the front: no other point has as few fits and a higher score.

    The front that fixed rules draw in the score-against-fits plane (for example margin, or a
    policy, at fixed batch sizes 1, 2, 5, 10, 20 and 50, and geometric growth): sorted by fits,
    a point is on it when its score is higher than that of every point with fewer (or as many)
    fits. A rule below it is beaten by a cheaper one.

    Parameters
    ----------
    fits : array-like of shape (n_points,)
        Mean task-model fits per run of each point (finite, positive).
    scores : array-like of shape (n_points,)
        Mean score of each point.

    Returns
    -------
    ndarray of int, shape (n_front,)
        Indices into the input, in increasing fits (and scores).
    """
    x = np.asarray(fits, dtype=float).ravel()
    y = np.asarray(scores, dtype=float).ravel()
    if x.shape != y.shape or x.size == 0:
        raise InvalidInputError(f"fits and scores must be non-empty and of one length, got {x.size} and {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(x > 0) and np.all(np.isfinite(y))):
        raise InvalidInputError("fits must be finite and positive and scores finite")
    order = np.lexsort((-y, x))  # fewest fits first; of equal fits, the best score first
    kept: list[int] = []
    best = -np.inf
    for i in order:
        if y[i] > best:
            kept.append(int(i))
            best = y[i]
    return np.asarray(kept, dtype=int)


def front_weights(front_fits: Sequence[float], at: float) -> tuple[int, int, float]:
    """Where ``at`` fits falls on a front: its two neighbours and the weight of the first.

    The front is interpolated linearly in log fits (the axis of the compute plots): at ``at``
    between neighbours ``lo`` and ``hi``, ``value = w * value[lo] + (1 - w) * value[hi]`` with
    ``w = (log hi - log at) / (log hi - log lo)``. Outside the front's range the nearest end
    stands for it (``lo == hi``, ``w = 1``): a front is never extrapolated.

    Parameters
    ----------
    front_fits : array-like of shape (n_front,)
        The front's fits in increasing order (:func:`compute_front`).
    at : float
        Fits at which the front is read (positive).

    Returns
    -------
    (int, int, float)
        Positions ``lo``, ``hi`` in ``front_fits`` and the weight ``w`` of ``lo``.
    """
    x = np.asarray(front_fits, dtype=float).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)) or np.any(np.diff(x) < 0) or np.any(x <= 0):
        raise InvalidInputError("the front's fits must be a non-empty, increasing sequence of positive numbers")
    if not (math.isfinite(at) and at > 0):
        raise InvalidInputError(f"the fits to read the front at must be finite and positive, got {at!r}")
    if at <= x[0]:
        return 0, 0, 1.0
    if at >= x[-1]:
        return x.size - 1, x.size - 1, 1.0
    hi = int(np.searchsorted(x, at, side="left"))
    lo = hi - 1
    if x[hi] == at:
        return hi, hi, 1.0
    w = (math.log(x[hi]) - math.log(at)) / (math.log(x[hi]) - math.log(x[lo]))
    return lo, hi, float(w)


# --------------------------------------------------------------------------------------------
# Paired differences per problem
# --------------------------------------------------------------------------------------------


def paired_differences(
    runs: pd.DataFrame,
    reference: str = "margin",
    metric: str = "aulc_accuracy",
    *,
    alpha: float = 0.05,
    confidence: float = 0.95,
    test: TestName = "wilcoxon",
) -> pd.DataFrame:
    """Per problem and strategy, the paired difference to ``reference`` across seeds.

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.
    reference : str
        The strategy every other one is compared with (margin sampling by default).
    metric : str
        Metric column (a score in [0, 1]; differences are reported in points).
    alpha : float
        Significance level of the win/loss decision.
    confidence : float
        Level of the t-based confidence interval of the mean difference.
    test : {"wilcoxon", "ttest"}
        Paired test across seeds, see :func:`paired_test`.

    Returns
    -------
    pandas.DataFrame
        One row per problem and strategy other than ``reference`` that has at least one ok run
        in that problem, columns ``dataset, model, regime, batch_size, strategy``, then

        - ``n_seeds``: paired seeds (both runs ok);
        - ``mean_strategy``, ``mean_reference``: means over those seeds, in points;
        - ``mean_diff``: mean of strategy minus reference, in points;
        - ``ci_low``, ``ci_high``: t-based confidence interval of ``mean_diff`` (NaN with fewer
          than 2 seeds; a point when every difference is equal);
        - ``p_value``: the paired test across seeds (NaN with fewer than 2 seeds, 1.0 when every
          difference is zero);
        - ``outcome``: ``"win"`` (mean_diff > 0 and p < alpha), ``"loss"`` (mean_diff < 0 and
          p < alpha), ``"tie"`` otherwise, or ``"n/a"`` when no seed is paired.

    Raises
    ------
    InvalidInputError
        If ``reference`` has no ok run.
    """
    ok = ok_runs(runs, metric)
    if not (ok["strategy"] == reference).any():
        raise InvalidInputError(
            f"the reference strategy {reference!r} has no ok run; strategies with ok runs: "
            f"{', '.join(sorted(map(str, ok['strategy'].unique())))}"
        )
    pair = list(_PAIR_KEYS)
    ref = ok.loc[ok["strategy"] == reference, [*pair, metric]].rename(columns={metric: "_ref"})
    others = ok.loc[ok["strategy"] != reference, [*pair, "strategy", metric]]
    merged = others.merge(ref, on=pair, how="left")
    keys = [*PROBLEM_KEYS, "strategy"]
    columns = [*keys, "n_seeds", "mean_strategy", "mean_reference", "mean_diff", "ci_low", "ci_high", "p_value", "outcome"]
    diff = merged[metric].to_numpy(dtype=float) - merged["_ref"].to_numpy(dtype=float)
    merged["_d"] = np.where(np.abs(diff) < _ZERO, 0.0, diff)
    both = merged.loc[merged["_ref"].notna()].reset_index(drop=True)
    grouped = both.groupby(keys, sort=True, dropna=False)
    agg = grouped.agg(
        n_seeds=("_d", "size"), mean_strategy=(metric, "mean"), mean_reference=("_ref", "mean"),
        mean_diff=("_d", "mean"), _sd=("_d", "std"),
    )
    values = both["_d"].to_numpy(dtype=float)
    positions = grouped.indices
    agg["p_value"] = [paired_test(values[positions[k]], test) for k in agg.index]
    n = agg["n_seeds"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tq = sps.t.ppf(0.5 + confidence / 2.0, np.where(n > 1, n - 1, 1))
        half = np.where(n > 1, tq * np.nan_to_num(agg["_sd"].to_numpy(dtype=float)) / np.sqrt(n), np.nan)
    for col in ("mean_strategy", "mean_reference", "mean_diff"):
        agg[col] = agg[col] * 100.0
    agg["ci_low"] = agg["mean_diff"] - 100.0 * half
    agg["ci_high"] = agg["mean_diff"] + 100.0 * half
    agg = agg.reset_index()
    # strategies with ok runs but no paired seed in a problem keep a row (n_seeds = 0, outcome n/a)
    out = merged[keys].drop_duplicates().merge(agg, on=keys, how="left")
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    out["outcome"] = [_outcome(m, p, alpha) for m, p in zip(out["mean_diff"], out["p_value"])]
    return out.sort_values(keys).reset_index(drop=True)[columns]


def run_differences(
    runs: pd.DataFrame, strategies: Sequence[str], reference: str = "margin", metric: str = "aulc_accuracy"
) -> pd.DataFrame:
    """Per run, the difference to the paired run of ``reference``, in points (not aggregated).

    Unlike :func:`paired_differences` (one row per problem, means and tests across seeds),
    this keeps one row per paired seed, for means pooled over runs and per-dataset views.

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.
    strategies : sequence of str
        The strategies compared with ``reference``, in the order of the output.
    reference : str
        The strategy every one of ``strategies`` is compared with.
    metric : str
        Metric column (a score in [0, 1]).

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, model, regime, batch_size, seed, diff, strategy``: one row per ok
        run of a strategy whose paired ``reference`` run is ok, ``diff`` in points.
    """
    ok = ok_runs(runs, metric)
    keys = list(_PAIR_KEYS)
    ref = ok[ok["strategy"] == reference].set_index(keys)[metric]
    frames = []
    for strategy in strategies:
        scores = ok[ok["strategy"] == strategy].set_index(keys)[metric]
        diff = (100.0 * (scores - ref)).dropna().rename("diff").reset_index()
        frames.append(diff.assign(strategy=strategy))
    if not frames:
        return pd.DataFrame(columns=[*keys, "diff", "strategy"])
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Ranks
# --------------------------------------------------------------------------------------------


def rank_table(runs: pd.DataFrame, metric: str = "aulc_accuracy") -> pd.DataFrame:
    """Per problem, the mean metric of each strategy over its ok seeds and its rank.

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.
    metric : str
        Metric column; higher is better.

    Returns
    -------
    pandas.DataFrame
        One row per problem and strategy with at least one ok run, columns ``dataset, model,
        regime, batch_size, strategy, n_seeds, mean`` (mean metric, in points) and ``rank``
        (1 = best within the problem, ties get the average rank). A strategy without ok runs in
        a problem has no row there and is ranked among fewer strategies.
    """
    ok = ok_runs(runs, metric)
    columns = [*PROBLEM_KEYS, "strategy", "n_seeds", "mean", "rank"]
    if ok.empty:
        return pd.DataFrame(columns=columns)
    table = (
        ok.groupby([*PROBLEM_KEYS, "strategy"], sort=True, dropna=False)[metric]
        .agg(n_seeds="size", mean="mean")
        .reset_index()
    )
    table["mean"] = table["mean"].astype(float) * 100.0
    table["rank"] = table.groupby(list(PROBLEM_KEYS), dropna=False)["mean"].rank(ascending=False, method="average")
    return table[columns]


def _complete_blocks(ranks: pd.DataFrame) -> pd.DataFrame:
    """Only the problems in which every strategy of ``ranks`` has a row."""
    strategies = ranks["strategy"].nunique()
    size = ranks.groupby(list(PROBLEM_KEYS), dropna=False)["strategy"].transform("nunique")
    return ranks.loc[size == strategies]


def mean_ranks(
    runs: pd.DataFrame, metric: str = "aulc_accuracy", *, by: Sequence[str] | None = None, complete_only: bool = False
) -> pd.DataFrame:
    """Mean rank of each strategy over problems (see :func:`rank_table`).

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.
    metric : str
        Metric column; higher is better.
    by : sequence of str, optional
        Grouping columns among the problem keys (e.g. :data:`SETTING_KEYS`).
    complete_only : bool
        Keep only problems in which every strategy has an ok run (what the Friedman test
        needs); otherwise a strategy's mean is over the problems it has results in.

    Returns
    -------
    pandas.DataFrame
        Columns ``[*by,] strategy, mean_rank, n_problems``, sorted by mean rank (best first).
    """
    by = list(by or [])
    bad = [c for c in by if c not in PROBLEM_KEYS]
    if bad:
        raise InvalidInputError(f"by must name problem columns ({', '.join(PROBLEM_KEYS)}), got {bad}")
    ranks = rank_table(runs, metric)
    if by:
        parts = []
        for _, group in ranks.groupby(by, sort=True, dropna=False):
            parts.append(_complete_blocks(group) if complete_only else group)
        ranks = pd.concat(parts) if parts else ranks
    elif complete_only:
        ranks = _complete_blocks(ranks)
    out = ranks.groupby([*by, "strategy"], dropna=False)["rank"].agg(mean_rank="mean", n_problems="size").reset_index()
    return out.sort_values([*by, "mean_rank", "strategy"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Over problems
# --------------------------------------------------------------------------------------------


def gap_closed(
    runs: pd.DataFrame,
    strategies: Sequence[str] | None = None,
    metric: str = "aulc_accuracy",
    *,
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Fraction of the random-to-oracle gap each strategy closes: a ratio of means.

    Over the paired runs (problem and seed) where both the oracle and random sampling ran ok,
    within each group of ``by``::

        gap_closed(S) = mean(S - random) / mean(oracle - random)

    1 is as good as the greedy look-ahead oracle, 0 is random. A ratio of means, not a mean of
    per-problem ratios: a problem where the oracle barely beats random cannot swing it. A
    strategy without an ok run on every one of those paired runs gets NaN (its mean would be
    over other runs than the gap's), and so does every strategy of a group where the oracle
    does not beat random on average (gap at most 1e-9).

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.
    strategies : sequence of str, optional
        The strategies to report, in this order (default: every strategy with an ok run,
        sorted by name).
    metric : str
        Metric column (a score in [0, 1]).
    by : sequence of str
        Grouping columns among the problem keys, e.g. ``("model",)``; empty for one group.

    Returns
    -------
    pandas.DataFrame
        One row per group and strategy, columns ``[*by,] strategy, n_runs`` (paired runs with
        oracle and random), ``gap_points`` (mean oracle - random, in points) and
        ``gap_closed``; empty when the oracle or random sampling has no ok run.
    """
    by = list(by)
    bad = [c for c in by if c not in PROBLEM_KEYS]
    if bad:
        raise InvalidInputError(f"by must name problem columns ({', '.join(PROBLEM_KEYS)}), got {bad}")
    columns = [*by, "strategy", "n_runs", "gap_points", "gap_closed"]
    ok = ok_runs(runs, metric)
    if not {ORACLE, RANDOM} <= set(ok["strategy"]):
        return pd.DataFrame(columns=columns)
    names = list(strategies) if strategies is not None else sorted(map(str, ok["strategy"].unique()))
    wide = ok.pivot_table(index=list(_PAIR_KEYS), columns="strategy", values=metric).dropna(subset=[ORACLE, RANDOM])
    rows = []
    groups = wide.groupby(level=by, sort=True) if by else [((), wide)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        gap = (group[ORACLE] - group[RANDOM]).mean()
        for name in names:
            complete = name in group and bool(group[name].notna().all())
            fraction = (group[name] - group[RANDOM]).mean() / gap if complete and gap > _GAP_EPS else float("nan")
            rows.append([*key, name, len(group), 100.0 * gap, fraction])
    return pd.DataFrame(rows, columns=columns)


def overall_comparison(
    runs: pd.DataFrame,
    reference: str = "margin",
    metric: str = "aulc_accuracy",
    *,
    alpha: float = 0.05,
    by: Sequence[str] | None = None,
    test: TestName = "wilcoxon",
    differences: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per strategy, the comparison over problems: rank, difference, win/tie/loss, test, gap.

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.
    reference : str
        The strategy every other one is compared with.
    metric : str
        Metric column (a score in [0, 1]).
    alpha : float
        Significance level of the per-problem win/loss decision.
    by : sequence of str, optional
        Grouping columns among the problem keys, e.g. :data:`SETTING_KEYS` for one block per
        setting; every statistic is then computed within each group.
    test : {"wilcoxon", "ttest"}
        Paired test across seeds within a problem (the test over problems is always the
        Wilcoxon signed-rank test).
    differences : pandas.DataFrame, optional
        The result of ``paired_differences(runs, reference, metric, alpha=alpha, test=test)``
        when already computed (it is then not recomputed).

    Returns
    -------
    pandas.DataFrame
        One row per strategy (the reference included), sorted by mean rank, columns:

        - ``[*by,] strategy``;
        - ``mean_rank``: mean rank over problems (:func:`rank_table`), ``n_problems``;
        - ``mean_diff``: mean over problems of the per-problem paired mean difference to the
          reference, in points (0 for the reference);
        - ``wins``, ``ties``, ``losses``: per-problem outcomes (:func:`paired_differences`);
        - ``p_value``: Wilcoxon signed-rank test of the per-problem mean differences across
          problems (NaN with fewer than 2 problems; 1.0 if all differences are zero);
        - ``p_value_holm``: the same p-values, Holm-adjusted over the family of comparisons
          with the reference (:func:`holm_adjust`; within each ``by`` group): the pairwise
          Wilcoxon tests against a control with Holm's correction, as scikit-posthocs and
          autorank report them. Unlike the Nemenyi test, it does not depend on which other
          strategies take part beyond their number. NaN for the reference;
        - ``gap_closed`` (only when both ``"oracle"`` and ``"random"`` ran): the fraction of the
          random-to-oracle gap closed, :func:`gap_closed` over the runs of the group; 0 for
          random and 1 for the oracle by construction.
    """
    by = list(by or [])
    bad = [c for c in by if c not in PROBLEM_KEYS]
    if bad:
        raise InvalidInputError(f"by must name problem columns ({', '.join(PROBLEM_KEYS)}), got {bad}")
    diffs = differences if differences is not None else paired_differences(runs, reference, metric, alpha=alpha, test=test)
    ranks = rank_table(runs, metric)
    gaps = gap_closed(runs, metric=metric, by=by)
    blocks = []
    group_iter = ranks.groupby(by, sort=True, dropna=False) if by else [((), ranks)]
    for key, rank_group in group_iter:
        key = key if isinstance(key, tuple) else (key,)
        diff_group = diffs
        for col, value in zip(by, key):
            diff_group = diff_group.loc[diff_group[col] == value]
        out = rank_group.groupby("strategy")["rank"].agg(mean_rank="mean", n_problems="size")
        valid = diff_group.loc[diff_group["n_seeds"] > 0]
        per = valid.groupby("strategy")
        out["mean_diff"] = per["mean_diff"].mean()
        for outcome, column in (("win", "wins"), ("tie", "ties"), ("loss", "losses")):
            out[column] = per["outcome"].apply(lambda o, name=outcome: int((o == name).sum()))
        out["p_value"] = per["mean_diff"].apply(lambda d: paired_test(d.to_numpy(), "wilcoxon"))
        others = out.index != reference
        out["p_value_holm"] = np.nan
        out.loc[others, "p_value_holm"] = holm_adjust(out.loc[others, "p_value"].to_numpy(dtype=float))
        if reference in out.index:
            out.loc[reference, ["mean_diff", "wins", "ties", "losses"]] = [0.0, 0, 0, 0]
        gap = gaps
        for col, value in zip(by, key):
            gap = gap.loc[gap[col] == value]
        if not gap.empty:
            out["gap_closed"] = gap.set_index("strategy")["gap_closed"]
        for col in ("wins", "ties", "losses"):
            out[col] = out[col].fillna(0).astype(int)
        out = out.reset_index()
        for col, value in zip(by, key):
            out.insert(by.index(col), col, value)
        blocks.append(out.sort_values(["mean_rank", "strategy"]))
    if not blocks:
        return pd.DataFrame(
            columns=[*by, "strategy", "mean_rank", "n_problems", "mean_diff", "wins", "ties", "losses", "p_value",
                     "p_value_holm"]
        )
    return pd.concat(blocks, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Friedman test and Nemenyi critical difference
# --------------------------------------------------------------------------------------------


def critical_difference(n_strategies: int, n_problems: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks (Demsar, 2006).

    Two strategies' mean ranks over ``n_problems`` differ significantly when they differ by at
    least ``CD = q_alpha * sqrt(k (k + 1) / (6 N))``, where ``q_alpha`` is the studentized
    range statistic for ``k`` groups and infinite degrees of freedom divided by ``sqrt(2)``
    (``scipy.stats.studentized_range``); e.g. ``q_0.05 = 2.569`` for ``k = 4``.

    Parameters
    ----------
    n_strategies : int
        Number of strategies ``k`` (at least 2).
    n_problems : int
        Number of problems ``N`` (at least 1).
    alpha : float
        Significance level, in (0, 1).

    Returns
    -------
    float
        The critical difference.
    """
    if int(n_strategies) < 2:
        raise InvalidInputError(f"the critical difference needs at least 2 strategies, got {n_strategies}")
    if int(n_problems) < 1:
        raise InvalidInputError(f"the critical difference needs at least 1 problem, got {n_problems}")
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha}")
    k, n = int(n_strategies), int(n_problems)
    q = float(sps.studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    return q * math.sqrt(k * (k + 1) / (6.0 * n))


def nemenyi_groups(ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal groups of strategies whose mean ranks are within the critical difference.

    Parameters
    ----------
    ranks : pandas.Series
        Mean rank per strategy (index: strategy names).
    cd : float
        Critical difference (:func:`critical_difference`).

    Returns
    -------
    list of list of str
        Each group (at least 2 strategies, in rank order) is a run of consecutive strategies,
        by mean rank, whose extreme ranks differ by less than ``cd``; no group is contained in
        another. These are the bars of a critical-difference diagram.
    """
    ordered = ranks.dropna().sort_values()
    names = list(map(str, ordered.index))
    values = ordered.to_numpy(dtype=float)
    groups: list[list[str]] = []
    last_end = -1
    for i in range(len(values)):
        j = i
        while j + 1 < len(values) and values[j + 1] - values[i] < cd:
            j += 1
        if j > i and j > last_end:
            groups.append(names[i : j + 1])
            last_end = j
    return groups


@dataclass(frozen=True)
class FriedmanResult:
    """Outcome of :func:`friedman_test`.

    Attributes
    ----------
    statistic, p_value : float
        Friedman chi-square statistic and p-value (NaN when the test cannot run: fewer than 3
        strategies or fewer than 2 complete problems).
    n_strategies, n_problems : int
        Strategies compared and complete problems used (every strategy has an ok run).
    critical_difference : float
        Nemenyi critical difference at ``alpha`` (NaN with fewer than 2 strategies or no problem).
    alpha : float
        Significance level.
    mean_ranks : pandas.Series
        Mean rank per strategy over the complete problems, best first.
    groups : list of list of str
        Groups not significantly different (:func:`nemenyi_groups`).
    nemenyi_p : pandas.DataFrame
        Pairwise Nemenyi p-values (:func:`nemenyi_p_values`), strategies in ``mean_ranks``
        order; the significance matrix of the critical-difference diagram.
    """

    statistic: float
    p_value: float
    n_strategies: int
    n_problems: int
    critical_difference: float
    alpha: float
    mean_ranks: pd.Series = field(repr=False)
    groups: list[list[str]] = field(default_factory=list)
    nemenyi_p: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)


def nemenyi_p_values(mean_ranks: pd.Series, n_problems: int) -> pd.DataFrame:
    """Pairwise Nemenyi p-values of strategies from their mean ranks over ``n_problems``.

    ``q = |R_i - R_j| / sqrt(k (k + 1) / (6 n))``, with p the upper tail of the studentized
    range distribution (k groups, infinite degrees of freedom) at ``q * sqrt(2)``: the test of
    scikit-posthocs' ``posthoc_nemenyi_friedman``. Two strategies differ at ``alpha`` exactly
    when their mean ranks differ by more than :func:`critical_difference`.

    Parameters
    ----------
    mean_ranks : pandas.Series
        Mean rank per strategy (index: strategy names).
    n_problems : int
        Problems (blocks) the ranks are averaged over.

    Returns
    -------
    pandas.DataFrame of shape (k, k)
        Symmetric, 1 on the diagonal; empty with fewer than 2 strategies or no problem.
    """
    k = len(mean_ranks)
    if k < 2 or n_problems < 1:
        return pd.DataFrame()
    values = mean_ranks.to_numpy(dtype=float)
    q = np.abs(values[:, None] - values[None, :]) / math.sqrt(k * (k + 1) / (6.0 * n_problems))
    p = sps.studentized_range.sf(q * math.sqrt(2.0), k, np.inf)
    np.fill_diagonal(p, 1.0)
    return pd.DataFrame(np.clip(p, 0.0, 1.0), index=mean_ranks.index, columns=mean_ranks.index)


def friedman_test(runs: pd.DataFrame, metric: str = "aulc_accuracy", *, alpha: float = 0.05) -> FriedmanResult:
    """Friedman test that all strategies rank alike over problems, with the Nemenyi CD.

    Uses the problems in which every strategy has at least one ok run; each problem contributes
    the strategies' mean metrics over seeds (``scipy.stats.friedmanchisquare``).

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table.
    metric : str
        Metric column; higher is better.
    alpha : float
        Significance level of the critical difference.

    Returns
    -------
    FriedmanResult
        Statistic and p-value (NaN with fewer than 3 strategies or 2 complete problems), the
        critical difference, the mean ranks and the groups of the CD diagram.
    """
    ranks = _complete_blocks(rank_table(runs, metric))
    wide = ranks.pivot_table(index=list(PROBLEM_KEYS), columns="strategy", values="mean", aggfunc="first")
    rank_wide = ranks.pivot_table(index=list(PROBLEM_KEYS), columns="strategy", values="rank", aggfunc="first")
    k, n = wide.shape[1], wide.shape[0]
    mean_rank = rank_wide.mean(axis=0).sort_values() if n else pd.Series(dtype=float)
    stat = p = float("nan")
    if k >= 3 and n >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.friedmanchisquare(*(wide[c].to_numpy(dtype=float) for c in wide.columns))
        stat, p = float(res.statistic), float(res.pvalue)
    cd = critical_difference(k, n, alpha) if k >= 2 and n >= 1 else float("nan")
    groups = nemenyi_groups(mean_rank, cd) if not math.isnan(cd) else []
    return FriedmanResult(stat, p, int(k), int(n), cd, alpha, mean_rank, groups, nemenyi_p_values(mean_rank, n))
