"""``metalearn train-stopping``: learn the stopping rule from simulated runs.

1. Simulate runs (:func:`~metalearn.stopping.simulate.simulate_with_stopping`) on tasks of a
   suite (synthetic tasks and the train split of the shared datasets; a task from a
   ``validation`` split is refused), each with every configured model and strategy, batch
   ``batch_size`` up to ``label_budget`` labels or the whole pool, recording the learned
   rule's features at every point. Each finished run is written at once to
   ``OUT/runs/RUN_ID.json`` (the resume cache: an interrupted or a larger later session,
   with ``resume=True`` / ``--resume``, computes only the runs it lacks) and appended to
   ``OUT/runs.jsonl.gz`` (:data:`RUNS_PACK`, one file to commit with the checkpoint so that an
   unfinished run continues on another machine);
   ``OUT/loops.csv.gz`` is the table of all points.
2. Targets: the gain in test accuracy (points) from the next ``horizon`` labels, on the
   learning curve smoothed over three points; a point whose horizon passes the end of a run
   that stopped at its budget is censored (left out); past the end of a run that used the
   whole pool the gain is that of the end.
3. Fit the quantile MLP (:mod:`metalearn.stopping.model`) with torch on the runs of the
   training tasks, keep the epoch with the best loss on a tenth of them.
4. Choose the recommended setting on held-in runs, from train-split datasets that no
   training run used: for each decision statistic (the mean gain or an upper quantile) and
   patience, the largest threshold whose replayed stops lose at most ``target_mean_loss``
   points on average and ``target_p90_loss`` in 90% of the runs; of those, the one that saves
   the most labels.
   Before that, the quantiles are calibrated on the same held-in points (split-conformal:
   :func:`conformal_quantile_shifts`), and the shifts are stored in the file: pooled, and per
   task-model family with enough held-in points (:func:`conformal_shifts_by_family`), since
   how fast a model keeps learning depends on its kind.
5. Write ``OUT/stopping.safetensors`` (weights + JSON model card, calibration included).

The run protocol is the trainers' skeleton (:mod:`metalearn.policies.trainers.base`): an
iteration is one task's runs (one progress row and one checkpoint each), ``resume`` behaves
as for every trainer, and the result is a
:class:`~metalearn.policies.trainers.results.TrainingResult`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from metalearn.common.csv_cells import write_csv
from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.policies.trainers.base import COMMON_PROGRESS_FIELDS, Run, RunConfig, start_run
from metalearn.policies.trainers.results import TrainingResult
from metalearn.stopping.features import STOPPING_FEATURE_SET, STOPPING_FEATURES
from metalearn.stopping.file import calibrated_quantiles, save_stopping_rule
from metalearn.stopping.model import GainModelArchitecture, NumpyGainModel, parameter_shapes
from metalearn.stopping.model_family import zoo_model_family

__all__ = ["StoppingTrainConfig", "train_stopping", "gain_targets", "replay_stops", "conformal_quantile_shifts",
           "conformal_shifts_by_family", "shifts_per_point",
           "PROGRESS_FIELDS"]

#: Columns of ``progress.csv``: one row per task simulated.
PROGRESS_FIELDS: tuple[str, ...] = (*COMMON_PROGRESS_FIELDS, "runs", "computed")


@dataclass
class StoppingTrainConfig(RunConfig):
    """Settings of ``metalearn train-stopping``; ``suite``, ``seed`` and ``out_dir`` are documented on
    :class:`~metalearn.policies.trainers.base.RunConfig`."""

    suite: str = "synthetic_and_train"
    """Task suite (name in ``envs/`` or a TOML path): synthetic tasks and the train split only."""
    out_dir: str = "out/train-stopping"
    """Run folder: ``runs/`` (resume cache), ``loops.csv.gz``, ``stopping.safetensors``, ``checkpoint/``."""
    n_tasks: int = 120
    """Tasks drawn from the suite (deterministic in ``seed``; a larger value on resume extends the runs)."""
    models: list[str] = field(default_factory=lambda: ["logreg", "nb"])
    """Task models each task is run with."""
    strategies: list[str] = field(default_factory=lambda: ["margin", "policy:default"])
    """Querying strategies (classic names, or ``policy:NAME_OR_PATH``)."""
    batch_size: int = 10
    """Records per loop."""
    label_budget: int = 500
    """Labels per run (or the whole pool, if smaller)."""
    horizon: int = 200
    """Labels over which the gain is predicted (the rule's question)."""
    window: int = 5
    """History length of the features."""
    hidden: int = 32
    """Width of the MLP."""
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75, 0.9])
    """Quantile levels of the gain the MLP predicts."""
    epochs: int = 400
    """Training epochs of the gain model."""
    learning_rate: float = 3e-3
    """Adam's learning rate."""
    weight_decay: float = 1e-4
    """Adam's weight decay."""
    held_in_fraction: float = 0.25
    """Fraction of the suite's real datasets (by name) kept out of training, for choosing the threshold."""
    decisions: list[str] = field(default_factory=lambda: ["mean", "q0.75", "q0.9"])
    """Candidate decision statistics: ``"mean"`` and quantile levels of ``quantiles`` (``"q0.9"``)."""
    patiences: list[int] = field(default_factory=lambda: [1, 2, 3])
    """Candidate numbers of calls in a row the statistic must stay below the threshold."""
    target_mean_loss: float = 0.6
    """Accuracy points the recommended threshold may lose on held-in runs, on average."""
    target_p90_loss: float = 1.5
    """Accuracy points the recommended threshold may lose on held-in runs, in 90% of them."""
    calibrate_quantiles: bool = True
    """Shift each predicted quantile so that its coverage on the held-in points equals its level
    (split-conformal, :func:`conformal_quantile_shifts`); the shifts are stored in the file."""
    min_family_points: int = 200
    """Held-in points a model family (:mod:`~metalearn.stopping.model_family`) needs for its own
    calibration shifts (``quantile_shifts_by_family`` in the file): how fast a model keeps
    learning depends on its kind; a family with fewer points uses the pooled shifts. 0 turns the
    per-family shifts off."""

    def validate(self) -> "StoppingTrainConfig":
        for name in ("n_tasks", "batch_size", "label_budget", "horizon", "hidden", "epochs"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.window, "window", minimum=2)
        check_positive_int(self.min_family_points, "min_family_points", minimum=0)
        for patience in self.patiences:
            check_positive_int(patience, "patience")
        levels = {f"q{float(q):g}" for q in self.quantiles}
        bad = [d for d in self.decisions if d != "mean" and d not in levels]
        if bad or not self.decisions or not self.patiences:
            raise InvalidInputError(f"decisions must be 'mean' or quantiles of {sorted(levels)}, got {self.decisions}")
        self.check_run_settings()
        if not self.models or not self.strategies:
            raise InvalidInputError("models and strategies must not be empty")
        if not 0.0 < float(self.held_in_fraction) < 1.0:
            raise InvalidInputError(f"held_in_fraction must lie in (0, 1), got {self.held_in_fraction}")
        GainModelArchitecture(len(STOPPING_FEATURES), int(self.hidden), tuple(float(q) for q in self.quantiles)).validate()
        return self

    def simulation_fingerprint(self) -> str:
        """Hash of what a stored run depends on (a resume with other values is refused)."""
        keys = ("suite", "batch_size", "label_budget", "window", "seed")
        return hashlib.sha256(json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ runs
def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _dataset_name(task: Any) -> str:
    info = task.info.get("dataset", {}) if isinstance(task.info, dict) else {}
    return str(info.get("name", task.name))


def _is_held_in(task: Any, config: StoppingTrainConfig) -> bool:
    """Real datasets are split by name (seeded) into training and held-in; synthetic ones train."""
    if task.info.get("source_kind") not in ("folder", "file", "sklearn"):
        return False
    digest = hashlib.sha256(f"{config.seed}|{_dataset_name(task)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") / 2**32 < float(config.held_in_fraction)


def _check_split(task: Any) -> None:
    info = task.info.get("dataset", {}) if isinstance(task.info, dict) else {}
    if str(info.get("split", "")).lower() == "validation":
        raise InvalidInputError(
            f"task {task.name!r} comes from a validation split: the stopping rule is trained on synthetic tasks and the "
            "train split only (use the synthetic_and_train suite, or a suite whose folder sources say split = \"train\")"
        )


def _strategy(name: str, task: Any, seed: int) -> Any:
    from metalearn.strategies.resolve import resolve_strategy

    return resolve_strategy(name, label_budget=task.label_budget, random_state=seed)


def _run_seed(seed: int, index: int, model: str, strategy: str) -> int:
    """Seed of one training run, from its identity alone (not the order runs are computed in)."""
    parts = [zlib.crc32(model.encode()), zlib.crc32(strategy.encode())]
    return int(np.random.SeedSequence([int(seed), int(index), *parts]).generate_state(1)[0] & 0x7FFFFFFF)


def _run_one(task: Any, model: str, strategy: str, seed: int, config: StoppingTrainConfig) -> dict[str, Any]:
    from metalearn.stopping.simulate import simulate_with_stopping
    from metalearn.tasks.models import ModelFactory

    run_task = task.with_setting(
        model=ModelFactory(model, random_state=seed),
        label_budget=min(int(config.label_budget), task.n_pool - task.initial_labeled.size),
        batch_size=int(config.batch_size),
    )
    run = simulate_with_stopping(run_task, _strategy(strategy, run_task, seed), record_features=True,
                                 window=int(config.window), seed=seed)
    res = run.result
    assert run.features is not None
    return {
        "n_bought": res.n_bought.astype(int).tolist(),
        "n_labeled": (res.n_bought + run_task.initial_labeled.size).astype(int).tolist(),
        "accuracy": res.accuracy.tolist(),
        "pool_exhausted": bool(res.n_bought[-1] + run_task.initial_labeled.size >= run_task.n_pool),
        "features": [[None if not np.isfinite(v) else float(v) for v in row] for row in run.features],
        "n_pool": run_task.n_pool,
        "n_classes": run_task.n_classes,
    }


#: Every finished run of a run folder, one JSON record per line, gzip members appended as runs
#: finish: the one file to commit so that an unfinished run continues on another machine (the
#: ``runs/`` folder, one file per run, is this machine's cache).
RUNS_PACK = "runs.jsonl.gz"


def read_runs_pack(path: Path) -> dict[str, dict[str, Any]]:
    """The records of a runs pack by run id; a pack cut short by a crash yields the runs before the cut."""
    records: dict[str, dict[str, Any]] = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    break  # a torn last line: that run is recomputed
                if isinstance(record, dict) and isinstance(record.get("run_id"), str):
                    records[record["run_id"]] = record
    except (OSError, EOFError, zlib.error):
        pass  # a torn last member: the runs read so far stand
    return records


def _append_to_pack(path: Path, record: dict[str, Any]) -> None:
    """Append one run as its own gzip member (a reader sees the members as one stream)."""
    with gzip.open(path, "ab") as pack:
        pack.write((json.dumps(record) + "\n").encode("utf-8"))


def _simulate_runs(config: StoppingTrainConfig, run: Run, progress: bool) -> tuple[pd.DataFrame, int]:
    from tqdm.auto import tqdm

    from metalearn.tasks.suite import load_task_suite

    out = run.out
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    pack_path = out / RUNS_PACK
    packed = read_runs_pack(pack_path) if pack_path.is_file() else {}
    fingerprint = config.simulation_fingerprint()
    suite = load_task_suite(config.suite)
    jobs = len(config.models) * len(config.strategies)
    bar = tqdm(total=int(config.n_tasks) * jobs, desc="stopping training runs", unit="run", disable=not progress)
    rows: list[pd.DataFrame] = []
    computed = 0
    for index, task in enumerate(suite.tasks(int(config.n_tasks), seed=int(config.seed))):
        started, computed_before = time.perf_counter(), computed
        _check_split(task)
        held_in = _is_held_in(task, config)
        for model in config.models:
            for strategy in config.strategies:
                run_id = f"{index:05d}__{_slug(model)}__{_slug(strategy)}"
                path = runs_dir / f"{run_id}.json"
                record = packed.get(run_id)
                if record is None and path.exists():
                    try:
                        record = json.loads(path.read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        record = None  # unreadable: recomputed, never trusted
                    if record is not None and record.get("fingerprint") == fingerprint:
                        _append_to_pack(pack_path, record)  # cached before the pack existed
                if record is not None and record.get("fingerprint") != fingerprint:
                        raise InvalidInputError(
                            f"{out} holds training runs of other settings (suite, batch size, budget, window or seed); "
                            "use another --out folder, or the same settings to resume"
                        )
                if record is None:
                    seed = _run_seed(config.seed, index, model, strategy)
                    record = {"fingerprint": fingerprint, "run_id": run_id, "task": task.name, "dataset": _dataset_name(task),
                              "source_kind": task.info.get("source_kind"), "model": model, "strategy": strategy,
                              "regime": task.regime, **_run_one(task, model, strategy, seed, config)}
                    tmp = path.with_suffix(".json.tmp")
                    tmp.write_text(json.dumps(record), encoding="utf-8")
                    os.replace(tmp, path)
                    _append_to_pack(pack_path, record)
                    computed += 1
                rows.append(_record_frame(record, held_in))
                bar.update()
        if index >= run.state.iteration:  # one progress row and one checkpoint per task simulated
            run.end_iteration({"iteration": index, "runs": jobs, "computed": computed - computed_before},
                              time.perf_counter() - started)
            run.save({})
    bar.close()
    return pd.concat(rows, ignore_index=True), computed


def _record_frame(record: dict[str, Any], held_in: bool) -> pd.DataFrame:
    features = np.asarray([[np.nan if v is None else v for v in row] for row in record["features"]], dtype=np.float64)
    frame = pd.DataFrame(features, columns=list(STOPPING_FEATURES))
    frame.insert(0, "accuracy", record["accuracy"])
    frame.insert(0, "n_labeled", record["n_labeled"])
    frame.insert(0, "n_bought", record["n_bought"])
    frame.insert(0, "point", np.arange(len(record["n_bought"])))
    for key in ("pool_exhausted", "n_pool", "n_classes", "regime", "strategy", "model", "source_kind", "dataset", "task", "run_id"):
        frame.insert(0, key, record[key])
    frame.insert(0, "held_in", held_in)
    return frame


# ------------------------------------------------------------------------------------ targets
def _smoothed(accuracy: np.ndarray) -> np.ndarray:
    padded = np.concatenate([accuracy[:1], accuracy, accuracy[-1:]])
    return (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0


def gain_targets(n_bought: np.ndarray, accuracy: np.ndarray, horizon: int, pool_exhausted: bool) -> np.ndarray:
    """Gain in test accuracy (points) from the next ``horizon`` labels at each point of one run.

    Parameters
    ----------
    n_bought : ndarray of shape (n_points,)
    accuracy : ndarray of shape (n_points,)
    horizon : int
    pool_exhausted : bool
        Whether the run ended because no unlabeled record was left (then a horizon past the
        end gains what the end has); otherwise such points are censored (NaN).

    Returns
    -------
    ndarray of shape (n_points,)
        NaN where censored.
    """
    n_bought = np.asarray(n_bought, dtype=np.float64)
    smooth = _smoothed(np.asarray(accuracy, dtype=np.float64))
    target = np.full(n_bought.size, np.nan)
    for j in range(n_bought.size):
        k = int(np.searchsorted(n_bought, n_bought[j] + horizon, side="left"))
        if k < n_bought.size:
            target[j] = 100.0 * (smooth[k] - smooth[j])
        elif pool_exhausted:
            target[j] = 100.0 * (smooth[-1] - smooth[j])
    return target


def replay_stops(loops: pd.DataFrame, expected: np.ndarray, threshold: float, patience: int = 1) -> pd.DataFrame:
    """Where the learned rule would stop in recorded runs, and what it would cost.

    Parameters
    ----------
    loops : DataFrame
        Rows of runs (``run_id``, ``point``, ``n_bought``, ``accuracy``), in point order.
    expected : ndarray of shape (len(loops),)
        The rule's expected gain at each row (NaN where it was not asked).
    threshold : float
    patience : int

    Returns
    -------
    DataFrame
        One row per run: ``labels_at_stop``, ``labels_end``, ``accuracy_at_stop``,
        ``accuracy_end``, ``points_lost``, ``labels_saved``, ``stopped``.
    """
    out = []
    frame = loops.assign(_expected=expected)
    for run_id, run in frame.groupby("run_id", sort=False):
        below = 0
        stop = None
        for j, value in enumerate(run["_expected"].to_numpy()):
            if not np.isfinite(value):
                continue
            below = below + 1 if value < threshold else 0
            if below >= patience:
                stop = j
                break
        n, acc = run["n_bought"].to_numpy(), run["accuracy"].to_numpy()
        j = len(run) - 1 if stop is None else stop
        out.append({"run_id": run_id, "labels_at_stop": int(n[j]), "labels_end": int(n[-1]),
                    "accuracy_at_stop": float(acc[j]), "accuracy_end": float(acc[-1]),
                    "points_lost": 100.0 * float(acc[-1] - acc[j]), "labels_saved": int(n[-1] - n[j]),
                    "stopped": stop is not None})
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------ fitting
def _fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray, config: StoppingTrainConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the quantile MLP (torch, one thread, seeded); keep the epoch best on a tenth of the runs.

    Parameters
    ----------
    x : ndarray of shape (n, n_features)
    y : ndarray of shape (n,)
        Gains in accuracy points.
    groups : ndarray of shape (n,)
        Run of each row: the early-stopping tenth is drawn by run, not by row.
    config : StoppingTrainConfig

    Returns
    -------
    params : dict of str to ndarray
        The weights of :func:`~metalearn.stopping.model.parameter_shapes`.
    info : dict
        Best epoch, its loss and a subsampled loss curve.
    """
    import torch

    torch.manual_seed(int(config.seed))
    torch.set_num_threads(1)
    rng = np.random.default_rng(int(config.seed))
    unique = np.unique(groups)
    early = set(rng.choice(unique, size=max(1, unique.size // 10), replace=False).tolist())
    is_early = np.array([g in early for g in groups])
    mean = x[~is_early].mean(axis=0)
    std = x[~is_early].std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    arch = GainModelArchitecture(len(STOPPING_FEATURES), int(config.hidden), tuple(float(q) for q in config.quantiles))
    k = len(arch.quantiles)
    net = torch.nn.Sequential(
        torch.nn.Linear(arch.n_features, arch.hidden), torch.nn.Tanh(),
        torch.nn.Linear(arch.hidden, arch.hidden), torch.nn.Tanh(),
        torch.nn.Linear(arch.hidden, arch.n_outputs),
    )
    with torch.no_grad():  # start the quantiles near the targets' spread
        cast(torch.nn.Linear, net[4]).bias[0] = float(np.quantile(y, arch.quantiles[0]))
    levels = torch.tensor(arch.quantiles, dtype=torch.float32)
    xt = torch.tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    train_idx = torch.tensor(np.flatnonzero(~is_early))
    early_idx = torch.tensor(np.flatnonzero(is_early))
    optimizer = torch.optim.Adam(net.parameters(), lr=float(config.learning_rate), weight_decay=float(config.weight_decay))

    def loss_of(idx: Any) -> Any:
        out = net(xt[idx])
        steps = torch.cat([out[:, :1], torch.nn.functional.softplus(out[:, 1:k])], dim=1)
        quantiles = torch.cumsum(steps, dim=1)
        diff = yt[idx, None] - quantiles
        pinball = torch.maximum(levels * diff, (levels - 1.0) * diff).mean()
        squared = torch.nn.functional.huber_loss(out[:, k], yt[idx], delta=5.0)
        return pinball + 0.2 * squared

    best: tuple[float, int, dict[str, torch.Tensor] | None] = (float("inf"), 0, None)
    batch = 1024
    order_rng = torch.Generator().manual_seed(int(config.seed))
    curve = []
    for epoch in range(int(config.epochs)):
        net.train()
        perm = train_idx[torch.randperm(train_idx.numel(), generator=order_rng)]
        for start in range(0, perm.numel(), batch):
            optimizer.zero_grad()
            loss = loss_of(perm[start:start + batch])
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            early_loss = float(loss_of(early_idx))
        curve.append(early_loss)
        if early_loss < best[0]:
            best = (early_loss, epoch, {k_: v.detach().clone() for k_, v in net.state_dict().items()})
    assert best[2] is not None
    state = best[2]
    params = {
        "x_mean": mean.astype(np.float32), "x_std": std.astype(np.float32),
        "l1.weight": state["0.weight"].numpy(), "l1.bias": state["0.bias"].numpy(),
        "l2.weight": state["2.weight"].numpy(), "l2.bias": state["2.bias"].numpy(),
        "out.weight": state["4.weight"].numpy(), "out.bias": state["4.bias"].numpy(),
    }
    assert set(params) == set(parameter_shapes(arch))
    info = {"best_epoch": best[1], "best_early_stopping_loss": best[0], "epochs": int(config.epochs),
            "early_stopping_runs": len(early), "loss_curve": [round(v, 4) for v in curve[:: max(1, len(curve) // 50)]]}
    return params, info


def conformal_quantile_shifts(predicted: np.ndarray, realised: np.ndarray, levels: tuple[float, ...] | list[float]) -> np.ndarray:
    """Split-conformal shift of each quantile level, from calibration points the model was not fitted on.

    For level L the shift is the L-quantile (inverted CDF) of the residuals ``realised -
    predicted[:, L]``: on the calibration points, the share of realised gains at or below the
    shifted quantile is then L (up to ties), and on new points from the same distribution it
    is L in expectation.

    Parameters
    ----------
    predicted : ndarray of shape (n, K)
        The regressor's quantiles at the calibration points.
    realised : ndarray of shape (n,)
        The realised gains there.
    levels : sequence of float
        The K levels.

    Returns
    -------
    ndarray of shape (K,)
        Points to add to each level (:func:`~metalearn.stopping.file.calibrated_quantiles`).
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    realised = np.asarray(realised, dtype=np.float64)
    if predicted.ndim != 2 or predicted.shape != (realised.size, len(levels)) or realised.size == 0:
        raise InvalidInputError(
            f"conformal shifts need predicted quantiles of shape (n, {len(levels)}) and n > 0 realised gains, "
            f"got {predicted.shape} and {realised.shape}"
        )
    return np.array([float(np.quantile(realised - predicted[:, i], float(level), method="inverted_cdf"))
                     for i, level in enumerate(levels)])


def conformal_shifts_by_family(predicted: np.ndarray, realised: np.ndarray, families: np.ndarray,
                               levels: tuple[float, ...] | list[float], min_points: int) -> dict[str, np.ndarray]:
    """:func:`conformal_quantile_shifts` per model family, for the families with at least ``min_points`` points.

    Parameters
    ----------
    predicted : ndarray of shape (n, K)
    realised : ndarray of shape (n,)
    families : ndarray of shape (n,)
        Each point's task-model family (:func:`~metalearn.stopping.model_family.model_family`).
    levels : sequence of float
    min_points : int
        Smaller families get no entry (they use the pooled shifts); 0 or less returns ``{}``.

    Returns
    -------
    dict of str to ndarray of shape (K,)
    """
    families = np.asarray(families).astype(str)
    if min_points <= 0:
        return {}
    return {str(f): conformal_quantile_shifts(predicted[families == f], realised[families == f], levels)
            for f in np.unique(families) if int((families == f).sum()) >= min_points}


def shifts_per_point(families: np.ndarray, pooled: np.ndarray, by_family: dict[str, np.ndarray]) -> np.ndarray:
    """Each point's calibration shifts, shape (n, K): its family's, else the pooled ones."""
    families = np.asarray(families).astype(str)
    out = np.tile(np.asarray(pooled, dtype=np.float64), (families.size, 1))
    for family, shifts in by_family.items():
        out[families == family] = shifts
    return out


def calibration_table(expected: np.ndarray, quantiles: np.ndarray, realised: np.ndarray, levels: tuple[float, ...],
                      n_bins: int = 8) -> tuple[pd.DataFrame, dict[str, float]]:
    """Estimated vs realised gain by bins of the estimate, and the coverage of each quantile.

    Returns
    -------
    table : DataFrame
        ``bin_low``, ``bin_high``, ``n``, ``estimated_mean``, ``realised_mean``.
    coverage : dict
        ``"q<level>"``: fraction of realised gains below that quantile (calibrated: = level).
    """
    keep = np.isfinite(expected) & np.isfinite(realised)
    e, r, q = expected[keep], realised[keep], quantiles[keep]
    edges = np.unique(np.quantile(e, np.linspace(0, 1, n_bins + 1))) if e.size else np.array([])
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        mask = (e >= low) & ((e < high) | (high == edges[-1]))
        if mask.any():
            rows.append({"bin_low": float(low), "bin_high": float(high), "n": int(mask.sum()),
                         "estimated_mean": float(e[mask].mean()), "realised_mean": float(r[mask].mean())})
    coverage = {f"q{level:g}": float(np.mean(r <= q[:, i])) if r.size else float("nan") for i, level in enumerate(levels)}
    return pd.DataFrame(rows), coverage


def _choose_threshold(
    loops: pd.DataFrame, statistic: np.ndarray, patience: int, config: StoppingTrainConfig
) -> tuple[float, bool, pd.DataFrame]:
    """The threshold for one decision statistic and patience, whether it meets the targets, the sweep."""
    grid = np.round(np.arange(-1.0, 3.01, 0.25), 2)
    rows = []
    for threshold in grid:
        stops = replay_stops(loops, statistic, float(threshold), patience)
        rows.append({"patience": patience, "threshold": float(threshold), "mean_points_lost": float(stops["points_lost"].mean()),
                     "p90_points_lost": float(np.quantile(stops["points_lost"], 0.9)),
                     "mean_labels_saved": float(stops["labels_saved"].mean()),
                     "mean_labels_at_stop": float(stops["labels_at_stop"].mean())})
    table = pd.DataFrame(rows)
    feasible = ((table["mean_points_lost"] <= config.target_mean_loss)
                & (table["p90_points_lost"] <= config.target_p90_loss)).to_numpy()
    if not feasible.any():
        return float(grid[0]), False, table  # the most conservative setting of the grid
    # The end of the first run of feasible thresholds: a larger threshold that happens to pass
    # after failing ones would be a lucky draw of the held-in runs, not a setting to trust.
    first = int(np.argmax(feasible))
    last = first
    while last + 1 < feasible.size and feasible[last + 1]:
        last += 1
    return float(grid[last]), True, table


def train_stopping(config: StoppingTrainConfig, resume: bool = False, progress: bool = True) -> TrainingResult:
    """Simulate (or resume) the training runs, fit the gain model, choose the threshold, write the rule.

    Parameters
    ----------
    config : StoppingTrainConfig
    resume : bool
        Continue the run of ``config.out_dir``: reuse its stored runs and simulate only the
        missing ones (a larger ``n_tasks`` extends it; other settings are refused); a finished
        run is left untouched. Without a checkpoint, start fresh (said in one line). When
        False, an ``out_dir`` that already holds a run is refused.
    progress : bool

    Returns
    -------
    TrainingResult
        ``policy_path`` and ``last_path``: ``out_dir/stopping.safetensors``;
        ``best_validation``: the held-in figures; ``details``: ``threshold``, ``held_in``,
        ``n_runs``, ``n_computed`` (runs simulated in this session) and ``loops`` (the table
        of all points).
    """
    start = time.perf_counter()
    config.validate()
    run = start_run(config, "stopping", resume, PROGRESS_FIELDS)
    out = run.out
    rule_path = out / "stopping.safetensors"
    if run.saved is not None and run.saved.get("finished") and run.state.iteration >= config.n_tasks and rule_path.is_file():
        # A finished run resumed: nothing to compute, its files stay as they are.
        details = {**run.saved["finished"], "n_computed": 0, "loops": pd.read_csv(out / "loops.csv.gz")}
        return run.result(policy_path=rule_path, last_path=rule_path, details=details)
    if run.saved is None:  # a fresh run recomputes every run
        if (out / "runs").exists():
            for path in (out / "runs").glob("*.json"):
                path.unlink()
        (out / RUNS_PACK).unlink(missing_ok=True)
    loops, computed = _simulate_runs(config, run, progress)
    fitting = time.perf_counter()
    targets = np.concatenate([
        gain_targets(run["n_bought"].to_numpy(), run["accuracy"].to_numpy(), int(config.horizon), bool(run["pool_exhausted"].iloc[0]))
        for _, run in loops.groupby("run_id", sort=False)
    ])
    loops = loops.assign(gain_target=targets)
    write_csv(loops, out / "loops.csv.gz", compression="gzip")
    x_all = loops[list(STOPPING_FEATURES)].to_numpy(dtype=np.float64)
    asked = np.all(np.isfinite(x_all), axis=1)
    train_rows = asked & np.isfinite(targets) & ~loops["held_in"].to_numpy(dtype=bool)
    if train_rows.sum() < 50:
        raise InvalidInputError(f"only {int(train_rows.sum())} training points: simulate more tasks (--tasks)")
    params, fit_info = _fit(x_all[train_rows], targets[train_rows], loops["run_id"].to_numpy()[train_rows], config)
    arch = GainModelArchitecture(len(STOPPING_FEATURES), int(config.hidden), tuple(float(q) for q in config.quantiles))
    model = NumpyGainModel(arch, params)
    quantiles = np.full((len(loops), len(arch.quantiles)), np.nan)
    expected = np.full(len(loops), np.nan)
    if asked.any():
        quantiles[asked], expected[asked] = model(x_all[asked])
    held = loops["held_in"].to_numpy(dtype=bool)
    held_loops = loops[held]
    if held_loops.empty:
        raise InvalidInputError("no held-in run: the suite has no real datasets to hold in; use synthetic_and_train")
    _, raw_coverage = calibration_table(expected[held], quantiles[held], targets[held], arch.quantiles)
    calibration_rows = held & asked & np.isfinite(targets)
    shifts = None
    by_family: dict[str, np.ndarray] = {}
    if config.calibrate_quantiles and calibration_rows.any():
        families = loops["model"].map(zoo_model_family).to_numpy().astype(str)
        shifts = conformal_quantile_shifts(quantiles[calibration_rows], targets[calibration_rows], arch.quantiles)
        by_family = conformal_shifts_by_family(quantiles[calibration_rows], targets[calibration_rows],
                                               families[calibration_rows], arch.quantiles, int(config.min_family_points))
        quantiles = calibrated_quantiles(quantiles, shifts_per_point(families, shifts, by_family))
    candidates = []
    sweeps = []
    for decision in config.decisions:
        statistic = expected if decision == "mean" else quantiles[:, [f"q{q:g}" for q in arch.quantiles].index(decision)]
        for patience in config.patiences:
            chosen, feasible, sweep = _choose_threshold(held_loops, statistic[held], int(patience), config)
            sweeps.append(sweep.assign(decision=decision))
            saved = float(sweep.loc[sweep["threshold"] == chosen, "mean_labels_saved"].iloc[0])
            candidates.append((feasible, saved if feasible else -float(patience), decision, int(patience), chosen, statistic))
    # The feasible setting that saves the most labels; if none is, the most cautious one.
    feasible_first = sorted(candidates, key=lambda c: (c[0], c[1], c[2] != "mean"), reverse=True)
    if not any(c[0] for c in candidates):
        top = max(config.decisions, key=lambda d: -1.0 if d == "mean" else float(d[1:]))
        feasible_first = [c for c in candidates if c[2] == top and c[3] == max(config.patiences)]
    _, _, decision, patience, threshold, statistic = feasible_first[0]
    sweep = pd.concat(sweeps, ignore_index=True)
    stops = replay_stops(held_loops, statistic[held], threshold, patience)
    table, coverage = calibration_table(expected[held], quantiles[held], targets[held], arch.quantiles)
    write_csv(sweep, out / "threshold_sweep.csv")
    write_csv(table, out / "calibration.csv")
    held_in = {
        "decision": decision,
        "patience": patience,
        "runs": int(stops.shape[0]),
        "datasets": sorted(set(held_loops["dataset"])),
        "threshold": threshold,
        "mean_points_lost": float(stops["points_lost"].mean()),
        "p90_points_lost": float(np.quantile(stops["points_lost"], 0.9)),
        "mean_labels_saved": float(stops["labels_saved"].mean()),
        "mean_labels_at_stop": float(stops["labels_at_stop"].mean()),
        "quantile_coverage": coverage,
        "quantile_coverage_uncalibrated": raw_coverage,
        "calibration": table.round(3).to_dict(orient="records"),
    }
    seconds = time.perf_counter() - start
    metadata = {
        "window": int(config.window),
        "horizon": int(config.horizon),
        "threshold": threshold,
        "patience": patience,
        "decision": decision,
        **({} if shifts is None else {"quantile_shifts": [float(v) for v in shifts]}),
        **({"quantile_shifts_by_family": {f: [float(v) for v in s] for f, s in by_family.items()}} if by_family else {}),
        "feature_set": dict(STOPPING_FEATURE_SET),
        "task_suite": config.suite,
        "trainer": {"method": "quantile-mlp on simulated learning curves", "settings": asdict(config)},
        "seed": int(config.seed),
        "training": {"seconds": round(seconds, 1), "runs": int(loops["run_id"].nunique()),
                     "training_points": int(train_rows.sum()), "models": list(config.models),
                     "strategies": list(config.strategies), **fit_info},
        "validation": {"held_in": held_in},
        "data": "synthetic tasks and the train split of ../shared/datasets only; held-in train datasets choose the threshold",
    }
    path = save_stopping_rule(rule_path, arch, params, metadata)
    finished = {"threshold": threshold, "held_in": held_in, "n_runs": int(loops["run_id"].nunique())}
    run.state.best_validation = held_in
    run.state.wall_seconds += time.perf_counter() - fitting  # the targets, the fit and the threshold
    run.save({}, finished=finished)
    return run.result(policy_path=path, last_path=path, details={**finished, "n_computed": computed, "loops": loops})
