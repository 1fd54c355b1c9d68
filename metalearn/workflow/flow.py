"""The ``next-batch`` flow: :func:`next_batch`, from the tables and the state to the next records to label.

Checks the arguments, reads the tables, takes the state's lock, restores the histories, fits
the task model, asks the strategy (and the stopping rule and the schedule) and writes the
outputs; :class:`NextBatch` is its result.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metalearn.common.file_lock import ExclusiveFileLock
from metalearn.common.record_identity import record_keys
from metalearn.common.text import printable
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.policies.file import PolicyFile
from metalearn.policies.strategy import PolicyStrategy
from metalearn.strategies.base import QueryStrategy
from metalearn.workflow.advice import _schedule_advice, _stopping_advice
from metalearn.workflow.outputs import _write_outputs
from metalearn.workflow.reservations import _pending_summary, _still_pending
from metalearn.workflow.state import (
    _HISTORY_ARRAYS,
    _SCHEDULE_PREFIX,
    _STATE_FORMAT,
    _STATE_VERSION,
    _STOP_PREFIX,
    StateFileError,
    StateLockedError,
    _check_fingerprint,
    _exists,
    default_state_path,
    read_state,
)
from metalearn.workflow.tables import _check_paths, _labels, _record_hashes, _records


#: Seconds a run waits while another ``next-batch`` uses the same state file.
LOCK_TIMEOUT_SECONDS = 60.0
#: Records picked per run when neither ``batch_size`` nor a schedule says how many.
DEFAULT_BATCH_SIZE = 20


@dataclass
class NextBatch:
    """The result of one :func:`next_batch` run.

    Attributes
    ----------
    table : pandas.DataFrame
        The records to label next: the id column, ``rank`` (1 = most useful) and ``score``
        (the policy's score of each pick when it was chosen, higher = more useful; for
        uncertainty strategies the uncertainty; NaN for strategies without scores).
    loop : int
        This run's loop number (1 for the first run with this state file).
    n_records, n_labeled : int
    classes : list of str
        Classes with labeled records.
    strategy : str
        The strategy used (policy file path or strategy name).
    history_loops : int
        Loops in the policy's metadata history after this run (0 for classic strategies).
    state_path : Path or None
    out_path : Path or None
    notes : list of str
        Things worth telling the user (ignored empty labels, unlabeled previous picks...).
    stop : bool or None
        The stopping rule's recommendation this run (None without a rule or a model).
    stop_rule : str or None
        The stopping rule used (its description).
    stop_estimate : dict or None
        A learned rule's estimate: expected gain (accuracy points) from its horizon of next
        labels, its quantiles, the threshold (see :class:`~metalearn.stopping.GainEstimate`).
    pending : dict of int to list of str
        Records handed out and not yet labeled, by the loop that handed them out (this run's
        batch included); they are not handed out again until labeled or released.
    batch_size : int or None
        Records picked this run.
    schedule : str or None
        The schedule's suggestion and why, one line (None without a schedule or its advice).
    """

    table: pd.DataFrame
    loop: int
    n_records: int
    n_labeled: int
    classes: list[str]
    strategy: str
    history_loops: int
    state_path: Path | None
    out_path: Path | None
    notes: list[str] = field(default_factory=list)
    stop: bool | None = None
    stop_rule: str | None = None
    stop_estimate: dict[str, Any] | None = None
    pending: dict[int, list[str]] = field(default_factory=dict)
    batch_size: int | None = None
    schedule: str | None = None


# ------------------------------------------------------------------------------------ strategy
def _strategy(policy: Any, label_budget: int, seed: int) -> tuple[QueryStrategy, str]:
    """The strategy of ``--policy`` (see :func:`~metalearn.strategies.resolve.resolve_strategy`) and its label."""
    from metalearn.strategies.resolve import resolve_strategy, strategy_label

    strategy = resolve_strategy(policy, label_budget=label_budget, missing_label=None, random_state=seed)
    return strategy, strategy_label(strategy)


def _loop_seed(seed: int, loop: int) -> int:
    """The seed of one run: a stream of independent seeds from the first run's seed."""
    return int(np.random.SeedSequence([int(seed), int(loop)]).generate_state(1)[0])


# ------------------------------------------------------------------------------------ the workflow
def next_batch(
    data: str | os.PathLike[str] | pd.DataFrame,
    labels: str | os.PathLike[str] | pd.DataFrame,
    *,
    model: str = "rf",
    batch_size: int | None = None,
    policy: str | os.PathLike[str] | PolicyFile = "default",
    out: str | os.PathLike[str] | None = None,
    state: str | os.PathLike[str] | None = None,
    id_column: str = "id",
    label_column: str = "label",
    classes: Sequence[str] | None = None,
    seed: int | None = None,
    label_budget: int | None = None,
    stop_rule: str | os.PathLike[str] | None = "default",
    release_pending: bool = False,
    release: Sequence[str] | None = None,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    schedule: str | os.PathLike[str] | None = None,
) -> NextBatch:
    """Pick the next records to label from the records and the labels gathered so far.

    Records handed out by an earlier run and still unlabeled are reserved (the state lists
    them as pending): they are not handed out again until their labels appear in the labels
    table or they are released, so two people who ask one after the other get different
    records. Two runs on one state at the same time are serialised by a lock on the state.

    Parameters
    ----------
    data : path or DataFrame
        The records: an id column and feature columns (CSV, TSV or Parquet).
    labels : path or DataFrame
        Labels gathered so far: the id column and the label column, any subset of records.
    model : str
        Task model of the zoo (``rf``, ``logreg``, ``hgb``, ``svm``, ``knn``, ``mlp``, ``nb``),
        fitted on the labeled records; it is also the query model.
    batch_size : int or None, default=None
        Records to pick (at most the number of unlabeled records). None: the schedule's
        suggestion with a ``schedule``, else 20.
    policy : str, path-like or PolicyFile
        A released policy name (``"default"``), a policy file, or a classic strategy name
        (``margin``, ``random``...), resolved by
        :func:`~metalearn.strategies.resolve.resolve_strategy` (a strategy name wins over a
        policy of the same name; write ``./name`` for a file).
    out : path, optional
        Where to write the table of records to label (CSV/TSV/Parquet by suffix).
    state : path, optional
        The state file; default ``<labels>.metalearn-state`` (required when ``labels`` is a
        DataFrame and the history should persist; without it nothing is persisted).
    id_column, label_column : str
        Column names.
    classes : sequence of str, optional
        The allowed label values; a label outside them is an error.
    seed : int, optional
        Seed of the first run (default 0); later runs continue the state's seed stream (a
        different value is ignored with a note).
    label_budget : int, optional
        Labels you intend to buy (default 100; kept in the state): scales the policy's
        ``budget_used`` feature.
    stop_rule : str, path-like or None, default="default"
        A stopping rule (:func:`metalearn.load_stopping_rule`: the released learned rule, a
        file, or a classic criterion's name) asked, after fitting, whether to stop buying
        labels; its history is kept in the state file. None: no stopping advice.
    schedule : str, path-like or None, default=None
        A batch schedule (:func:`metalearn.load_schedule`: a rule spec such as
        ``geometric:2:2`` or a learned schedule's file) asked, after fitting, how many records
        to buy before the next retrain (with the labels left in ``label_budget``); its answer
        is this run's batch size unless ``batch_size`` is given, and its history (loop count,
        metadata) is kept in the state file.
    release_pending : bool, default=False
        Hand out again every record of earlier runs that is still unlabeled (e.g. after an
        annotator dropped their batch).
    release : sequence of str, optional
        Ids of pending records to hand out again (the others stay reserved).
    lock_timeout : float, default=60
        Seconds to wait while another ``next-batch`` uses the same state file.

    Returns
    -------
    NextBatch

    Raises
    ------
    DatasetError
        Unreadable tables, missing columns, duplicate or missing ids, labeled ids not in the
        records, two labels for one id, labels outside ``classes``.
    StateFileError
        A state file from another dataset (no common id, changed records or columns), or
        unreadable.
    StateLockedError
        Another ``next-batch`` held the state for longer than ``lock_timeout``.
    OutputFileError
        ``out`` or ``state`` is not a regular file (a device, a FIFO, a symlink to one), or
        writing failed (full disk...): then neither output has changed.
    InvalidInputError
        Fewer than two classes labeled (for a strategy that needs a model), a batch larger
        than the unlabeled records not handed out already, or a class that lost all its
        labels since the last run.
    """
    from metalearn.common.validation import check_positive_int, check_real

    if schedule is not None:
        from metalearn.schedules import load_schedule

        load_schedule(schedule)  # a bad spec or file fails before any work
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    elif schedule is None:
        batch_size = DEFAULT_BATCH_SIZE
    if seed is not None:
        check_positive_int(seed, "seed", minimum=0)
    if label_budget is not None:
        check_positive_int(label_budget, "label_budget")
    if not 0.0 <= check_real(lock_timeout, "lock_timeout") <= 24 * 3600:
        raise InvalidInputError(f"lock_timeout must be between 0 and 86400 seconds, got {lock_timeout!r}"[:200])
    if release is not None:
        if isinstance(release, str) or not all(isinstance(i, str) for i in release):
            raise InvalidTypeError("release must be a list of record ids (text)")
        release = [i.strip() for i in release if i.strip()]
    for option, column in (("id_column", id_column), ("label_column", label_column)):
        if not isinstance(column, str) or not column.strip():
            raise InvalidInputError(f"{option} must be a column name, got {column!r}"[:300])
    if id_column == label_column:
        raise InvalidInputError(
            f"the id column and the label column are both {id_column!r}; name the label column with --label-column"
        )
    out_path = None if out is None else Path(out).expanduser()
    if state is None and not isinstance(labels, pd.DataFrame):
        state = default_state_path(labels)
    state_path = None if state is None else Path(state).expanduser()
    _check_paths(data, labels, out_path, state_path)
    if classes is not None:
        classes = [str(c).strip() for c in classes if str(c).strip()]
        if len(set(classes)) < 2:
            raise InvalidInputError(f"classes must list at least two distinct values, got {classes}")
    ids, features, records_name, notes = _records(data, id_column, label_column)
    y, label_notes = _labels(labels, id_column, label_column, ids, classes)
    notes += label_notes
    n_records = ids.shape[0]
    n_unlabeled = n_records - sum(v is not None for v in y)
    if n_unlabeled == 0:
        raise InvalidInputError(f"every one of the {n_records} records is labeled: nothing left to pick")
    if batch_size is not None and batch_size > n_unlabeled:
        raise InvalidInputError(f"batch_size={batch_size} but only {n_unlabeled} record(s) are unlabeled; ask for at most {n_unlabeled}")

    lock: Any = contextlib.nullcontext()
    if state_path is not None:
        shown = printable(state_path)
        lock = ExclusiveFileLock(
            state_path, timeout=lock_timeout,
            busy=lambda: StateLockedError(
                f"another next-batch is using {shown}; try again (waited {lock_timeout:g} s for it to finish)"
            ),
        )
    with lock:  # from reading the state to writing every output: no lost update, no record handed out twice
        return _run_locked(
            ids=ids, features=features, records_name=records_name, notes=notes, y=y, model=model,
            batch_size=batch_size, policy=policy, out_path=out_path, state_path=state_path, id_column=id_column,
            label_column=label_column, seed=seed, label_budget=label_budget, stop_rule=stop_rule,
            release_pending=release_pending, release=release, schedule=schedule,
        )


def _run_locked(
    *, ids: np.ndarray, features: pd.DataFrame, records_name: str, notes: list[str], y: np.ndarray, model: str,
    batch_size: int | None, policy: Any, out_path: Path | None, state_path: Path | None, id_column: str,
    label_column: str, seed: int | None, label_budget: int | None, stop_rule: Any, release_pending: bool,
    release: Sequence[str] | None, schedule: Any = None,
) -> NextBatch:
    """The part of :func:`next_batch` that reads the state and writes the outputs (under the state's lock)."""
    from metalearn.common.validation import check_positive_int
    from metalearn.strategies.uncertainty import UncertaintySampling
    from metalearn.tasks.models import make_model
    from metalearn.tasks.preprocessing import TabularPreprocessor

    labeled = np.array([v is not None for v in y], dtype=bool)
    n_records, n_labeled = ids.shape[0], int(labeled.sum())
    id_keys = record_keys(ids, n_records)
    hashes = _record_hashes(features)
    columns = [str(c) for c in features.columns]
    saved: dict[str, Any] | None = None
    saved_arrays: dict[str, np.ndarray] = {}
    old_positions = None
    if state_path is not None and _exists(state_path):
        saved, saved_arrays = read_state(state_path)
        old_positions = _check_fingerprint(saved, saved_arrays, id_keys, hashes, columns, ids, state_path, records_name)
        n_new, n_gone = int((old_positions < 0).sum()), saved_arrays["id_keys"].size - int((old_positions >= 0).sum())
        if n_new or n_gone:
            notes.append(f"records changed since the last run: {n_new} new, {n_gone} removed (the history follows ids)")
    first_seed = 0 if seed is None else int(seed)
    if saved is not None:
        if seed is not None and int(seed) != int(saved["seed"]):
            notes.append(f"--seed {seed} ignored: this state continues the seed stream of its first run (seed {saved['seed']})")
        first_seed = int(saved["seed"])
    budget = int(saved["label_budget"]) if saved is not None else 100
    if label_budget is not None:
        budget = check_positive_int(label_budget, "label_budget")
    loop = int(saved["loops"]) + 1 if saved is not None else 1
    run_seed = _loop_seed(first_seed, loop)

    pending = _still_pending(saved.get("pending", []) if saved is not None else [], ids, labeled, release_pending,
                             release, notes)
    reserved = np.isin(ids, [i for group in pending for i in group["ids"]])
    available = np.flatnonzero(~labeled & ~reserved)
    if batch_size is not None and batch_size > available.size:
        held = _pending_summary(pending)
        raise InvalidInputError(
            f"batch_size={batch_size} but only {available.size} unlabeled record(s) are not handed out already "
            f"({held}); ask for at most {available.size}, or hand the pending ones out again with --release-pending "
            "(release_pending=True) or --release ID,..."
        )

    strategy, strategy_name = _strategy(policy, budget, run_seed)
    label_values = sorted({v for v in y if v is not None})
    X = TabularPreprocessor().fit_transform(features)
    clf = None
    if strategy.requires_classifier:
        if len(label_values) < 2:
            raise InvalidInputError(
                f"the model needs labeled records of at least two classes, but the labels hold {n_labeled} labeled "
                f"record(s) of {len(label_values)} class(es) {label_values[:5]}; label a few records of another class "
                "(a first batch without a model: --policy random)"
            )
        clf = make_model(model, random_state=run_seed).fit(X[labeled], y[labeled].astype(str))

    history_meta = saved.get("history") if saved is not None else None
    if isinstance(strategy, PolicyStrategy) and history_meta is not None:
        _restore_policy_history(strategy, X, ids, label_values, history_meta, saved_arrays, state_path, notes)

    stop, stop_name, stop_estimate, stop_state = _stopping_advice(
        stop_rule, X, y, clf, saved, saved_arrays, old_positions, run_seed, notes, state_path
    )
    suggested, schedule_advice, schedule_state = _schedule_advice(
        schedule, X, y, clf, budget - n_labeled, saved, saved_arrays, old_positions, notes, state_path
    )
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE if suggested is None else suggested
        if batch_size > available.size:
            notes.append(f"{batch_size} record(s) suggested but only {available.size} are not handed out already: "
                         f"{available.size} picked")
            batch_size = int(available.size)

    restrict = available if reserved.any() else None
    if isinstance(strategy, PolicyStrategy):
        picks = strategy.query(X, y, clf, batch_size=batch_size, record_ids=ids, candidates=restrict, step_scores=True)
        scores = strategy.last_pick_scores_.astype(np.float64)
        if strategy.last_uninformative_ and strategy.uninformative_model == "random":
            notes.append("the model gives every record the same probabilities (too few labels for it to split on): "
                         "picked at random, which keeps the labeled classes in the pool's proportions")
    else:
        # A classic strategy picks from the pool without the reserved records (a fresh strategy each run).
        rows = np.arange(n_records) if restrict is None else np.flatnonzero(labeled | ~reserved)
        picks = rows[strategy.query(X[rows], y[rows], clf, batch_size=batch_size)]
        if isinstance(strategy, UncertaintySampling) and clf is not None:
            scores = np.asarray(type(strategy).uncertainty(clf.predict_proba(X[picks])), dtype=np.float64)
        else:
            scores = np.full(picks.shape[0], np.nan)
    table = pd.DataFrame({id_column: ids[picks], "rank": np.arange(1, picks.shape[0] + 1), "score": scores})
    picked = ids[picks].tolist()
    pending = [*pending, {"loop": loop, "ids": picked}]

    history_loops = 0
    arrays: dict[str, np.ndarray] = {"id_keys": id_keys, "record_hashes": hashes}
    meta: dict[str, Any] = {
        "format": _STATE_FORMAT,
        "version": _STATE_VERSION,
        "columns": columns,
        "n_records": n_records,
        "id_column": id_column,
        "label_column": label_column,
        "seed": first_seed,
        "label_budget": budget,
        "loops": loop,
        "history": None,
        "log": list(saved["log"]) if saved is not None else [],
        "pending": pending,
    }
    if isinstance(strategy, PolicyStrategy):
        exported = strategy.history_state()
        if exported is not None:
            history_arrays, history_meta = exported
            arrays.update(history_arrays)
            meta["history"] = history_meta
            history_loops = int(history_meta["n_loops"])
    elif history_meta is not None and saved is not None:
        # A classic strategy this run: keep the policy's history for later runs, following ids.
        kept = {name: saved_arrays[name] for name in _HISTORY_ARRAYS if name in saved_arrays}
        arrays.update(kept)
        meta["history"] = history_meta
    if schedule_state is not None:
        schedule_arrays, meta["schedule"] = schedule_state
        arrays.update({f"{_SCHEDULE_PREFIX}{name}": value for name, value in schedule_arrays.items()})
    if stop_state is not None:
        stop_arrays, meta["stopping"] = stop_state
        arrays.update({f"{_STOP_PREFIX}{name}": value for name, value in stop_arrays.items()})
    meta["log"].append(
        {"loop": loop, "strategy": strategy_name, "model": model, "n_labeled": n_labeled, "n_records": n_records,
         "picked": picked, "stop": stop}
    )
    _write_outputs(table, out_path, state_path, meta, arrays)
    return NextBatch(
        table=table, loop=loop, n_records=n_records, n_labeled=n_labeled, classes=label_values,
        strategy=strategy_name, history_loops=history_loops, state_path=state_path, out_path=out_path, notes=notes,
        stop=stop, stop_rule=stop_name, stop_estimate=stop_estimate, batch_size=batch_size,
        schedule=schedule_advice,
        pending={int(group["loop"]): list(group["ids"]) for group in pending},
    )


def _restore_policy_history(
    strategy: PolicyStrategy, X: np.ndarray, ids: np.ndarray, label_values: list[str], history_meta: dict[str, Any],
    saved_arrays: dict[str, np.ndarray], state_path: Path | None, notes: list[str],
) -> None:
    """Load the policy's multi-loop history of the state into ``strategy`` (or start a fresh one, with a note)."""
    lost = sorted(set(history_meta.get("classes", [])) - set(label_values))
    if lost:
        raise StateFileError(
            f"class(es) {lost[:5]} had labeled records in earlier runs but have none now (labels removed or changed?); "
            f"restore them, or delete {printable(state_path)} to start a fresh history"
        )
    history_arrays = {name: saved_arrays[name] for name in _HISTORY_ARRAYS}
    if int(history_meta["window"]) != strategy.policy_file.window:
        notes.append(
            f"the saved history has a window of {history_meta['window']} loops but this policy uses "
            f"{strategy.policy_file.window}: starting a fresh history"
        )
        return
    try:
        strategy.load_history_state(X, history_arrays, history_meta, record_ids=ids)
    except (InvalidInputError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise StateFileError(
            f"state file {printable(state_path)!r}: its policy history cannot be restored ({printable(exc)}); "
            "delete it to start over"
        ) from None
