"""Run a benchmark: validate up front, execute the missing runs in parallel, store, summarise.

Runs execute with joblib on local processes, or on a Dask distributed cluster. Only this
process writes to the result folder, one file per finished run, so a killed worker can
neither corrupt nor duplicate a result: its runs are simply executed again. When a worker
dies (SIGKILL, out of memory), joblib gives up the whole pool and Dask may lose the data a
task needs; the runner then resubmits the runs it has not received yet, at most
:data:`MAX_WORKER_RESTARTS` times, and otherwise stops with a clear error (finished runs stay
stored, and rerunning resumes).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import warnings
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
from tqdm.auto import tqdm

from metalearn.benchmark.config import BenchmarkConfig, RunKey, resolve_datasets, task_seed
from metalearn.benchmark.execute import execute_run
from metalearn.benchmark.storage import ResultStore, tables_from_records
from metalearn.common.dask_address import parse_dask_address
from metalearn.exceptions import InvalidInputError, MetalearnError
from metalearn.tasks.datasets import Dataset
from metalearn.tasks.task import make_task

__all__ = ["BenchmarkResult", "run_benchmark", "check_feasible", "ignore_further_interrupts", "MAX_WORKER_RESTARTS"]

#: Times a benchmark resubmits its unfinished runs after losing workers, before it gives up.
MAX_WORKER_RESTARTS = 3


def _lost_worker_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean a worker died, not that a run failed (runs never raise).

    joblib/loky raises ``TerminatedWorkerError`` (a ``BrokenProcessPool``) for the whole
    pool; Dask raises ``KilledWorker`` for a task that took down too many workers, and
    cancels futures whose inputs were lost with a worker (a ``CancelledError``).
    """
    errors: list[type[BaseException]] = [BrokenProcessPool, CancelledError]
    try:
        from distributed import KilledWorker
    except ImportError:  # pragma: no cover - dask is optional
        pass
    else:
        errors.append(KilledWorker)
    return tuple(errors)


def ignore_further_interrupts() -> None:
    """Ignore Ctrl-C from now on: for a command that was interrupted and is exiting (status 130).

    Python resets a Python-level SIGINT handler to the default one while it shuts down, so a
    second Ctrl-C during the exit (workers being stopped, files closed) would kill the process
    by signal instead of letting it exit with 130. An ignored signal stays ignored. No-op
    outside the main thread, where handlers cannot be set.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while workers are being stopped after a first one; restore afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_workers(results: Iterator[dict[str, Any]], bar: Any) -> None:
    """Close the result generator (joblib aborts its pool, Dask closes its client) and the bar."""
    with _interrupts_deferred():
        close = getattr(results, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        bar.close()


@dataclass
class BenchmarkResult:
    """What a benchmark produced.

    Attributes
    ----------
    config : BenchmarkConfig
    runs : pandas.DataFrame
        One row per run (failed ones included, with ``status="failed"``).
    curves : pandas.DataFrame
        One row per run and loop.
    out_dir : Path or None
        The result folder.
    computed : int
        Runs computed by this call (the rest were already stored).
    wall_seconds : float
        Wall time of this call.
    """

    config: BenchmarkConfig
    runs: pd.DataFrame
    curves: pd.DataFrame
    out_dir: Path | None
    computed: int
    wall_seconds: float

    @property
    def failed(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] != "ok"]


def check_feasible(config: BenchmarkConfig, datasets: Sequence[Dataset]) -> None:
    """Fail before any compute if a dataset cannot give the configured tasks.

    Builds the first seed's task for every dataset and regime (a split and an initial set,
    no model training) and checks the label budget fits in the pool.
    """
    names = [ds.name for ds in datasets]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"two datasets share a name: {names}")
    for ds in datasets:
        for regime in config.regimes:
            try:
                task = make_task(
                    ds.X, ds.y, name=ds.name, regime=regime, n_warm=config.n_warm, test_size=config.test_size,
                    label_budget=config.label_budget, max_pool=config.max_pool,
                    seed=task_seed(config.seed, ds.name, 0),
                )
            except InvalidInputError as exc:
                raise InvalidInputError(f"dataset {ds.name!r} ({regime} start): {exc}") from None
            unlabeled = task.n_pool - task.initial_labeled.size
            if config.label_budget > unlabeled:
                raise InvalidInputError(
                    f"label budget {config.label_budget} is larger than the {unlabeled} unlabeled records of "
                    f"dataset {ds.name!r} ({regime} start, pool of {task.n_pool}); lower --budget or drop the dataset"
                )


def _joblib_results(
    jobs: list[tuple[Dataset, RunKey]], config: BenchmarkConfig, n_jobs: int
) -> Iterator[dict[str, Any]]:
    from joblib import Parallel, delayed

    if n_jobs == 1:
        for dataset, key in jobs:
            yield execute_run(dataset, key, config)
        return
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1, pre_dispatch="2*n_jobs")
    yield from parallel(delayed(execute_run)(dataset, key, config) for dataset, key in jobs)


def _dask_results(
    jobs: list[tuple[Dataset, RunKey]], config: BenchmarkConfig, address: str
) -> Iterator[dict[str, Any]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InvalidInputError(
            "--dask needs the distributed package: pip install 'metalearn-al[dask]'"
        ) from None
    cluster = None
    parsed = parse_dask_address(address)
    if parsed.is_local:
        cluster = LocalCluster(
            n_workers=parsed.local_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise InvalidInputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        scattered = {}
        futures = []
        for dataset, key in jobs:
            if dataset.name not in scattered:
                # A replica on every worker: scattered data has no task to recompute it from,
                # so a single copy would die with its worker and take the pending runs along.
                scattered[dataset.name] = client.scatter(dataset, broadcast=True)
            # pure=False: the key is ours to choose; retries re-run a task whose worker died.
            futures.append(client.submit(execute_run, scattered[dataset.name], key, config, key=key.run_id, retries=2))
        for future in as_completed(futures):
            yield future.result()
            future.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_benchmark(
    config: BenchmarkConfig,
    out_dir: str | Path | None = None,
    *,
    n_jobs: int = 1,
    dask: str | None = None,
    progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    stored_only: bool = False,
) -> BenchmarkResult:
    """Run (or resume) a benchmark and return its tables.

    Parameters
    ----------
    config : BenchmarkConfig
    out_dir : path or None
        Result folder. Runs already stored there (same configuration) are not recomputed.
        None keeps results in memory only (no resume).
    n_jobs : int
        joblib worker processes (-1: all cores). Ignored with ``dask``.
    dask : str or None
        A Dask scheduler address (``tcp://host:8786``), or ``"local"`` / ``"local:N"`` for a
        local cluster of N worker processes.
    progress : bool
        Show a progress bar with runs done and the estimated time left.
    on_result : callable or None
        Called with each finished run's record (for tests and notebooks).
    stored_only : bool
        Compute nothing: return the runs of this configuration already stored in
        ``out_dir`` (a look at an unfinished benchmark). Requires ``out_dir``.

    Returns
    -------
    BenchmarkResult
    """
    start = time.perf_counter()
    config.validate()
    if dask is not None:
        parse_dask_address(dask)  # a wrong address fails before any work
    datasets = resolve_datasets(config.datasets, seed=config.seed)
    if not datasets:
        raise InvalidInputError(f"the dataset specs {config.datasets} name no dataset")
    check_feasible(config, datasets)
    by_name = {ds.name: ds for ds in datasets}
    keys = config.run_keys(list(by_name))

    if stored_only and out_dir is None:
        raise InvalidInputError("stored_only needs the result folder (out_dir) whose stored runs to read")
    store = ResultStore(out_dir) if out_dir is not None else None
    records: list[dict[str, Any]] = []
    versions = config.strategy_versions()
    done: dict[str, tuple[str, str]] = {}
    if store is not None:
        store.prepare(config)
        done = store.finished(config.result_fingerprint())
    # A stored run counts only if it succeeded with the same strategy version (policy file).
    pending = [k for k in keys if done.get(k.run_id) != ("ok", versions[k.strategy])]
    if stored_only:
        missing = {k.run_id for k in pending if k.run_id not in done}  # failed runs stay listed as failed
        keys = [k for k in keys if k.run_id not in missing]
        pending = []
    retried: set[str] = set()
    computed = 0
    restarts = 0
    lost_worker = _lost_worker_errors()

    bar = tqdm(total=len(keys), initial=len(keys) - len(pending), desc="benchmark runs", unit="run", disable=not progress)
    while pending:
        jobs = [(by_name[k.dataset], k) for k in pending]
        results = _dask_results(jobs, config, dask) if dask else _joblib_results(jobs, config, n_jobs)
        failed_now: list[RunKey] = []
        by_id = {k.run_id: k for k in pending}
        received: set[str] = set()
        try:
            for record in results:
                summary = record["summary"]
                key = by_id[summary["run_id"]]
                if key.run_id in received:  # delivered twice (a resubmitted task): stored once
                    continue
                received.add(key.run_id)
                if summary["status"] != "ok" and key.run_id not in retried:
                    retried.add(key.run_id)  # a failed run gets one more try before it is reported
                    failed_now.append(key)
                    continue
                computed += 1
                summary["strategy_version"] = versions[key.strategy]
                if store is not None:
                    store.write(record)
                else:
                    records.append(record)
                if on_result is not None:
                    on_result(record)
                bar.update()
        except lost_worker as exc:
            # A worker died: the runs it (or, for joblib, the whole pool) had in flight are lost.
            # Nothing of theirs was stored, so resubmitting them duplicates nothing.
            restarts += 1
            unfinished = [k for k in pending if k.run_id not in received]
            if restarts > MAX_WORKER_RESTARTS:
                bar.close()
                where = f"; the {computed} finished run(s) are stored in {store.out_dir}, rerun to resume" if store else ""
                raise MetalearnError(
                    f"benchmark workers died {restarts} times ({type(exc).__name__}: {exc}); gave up with "
                    f"{len(unfinished) + len(failed_now)} run(s) unfinished{where}. A run that kills its worker "
                    "(e.g. out of memory) needs more memory per worker or fewer --jobs"
                ) from exc
            warnings.warn(
                f"a benchmark worker died ({type(exc).__name__}); resubmitting {len(unfinished)} unfinished run(s) "
                f"(restart {restarts} of at most {MAX_WORKER_RESTARTS})",
                RuntimeWarning,
                stacklevel=2,
            )
            pending = unfinished + failed_now
            continue
        except KeyboardInterrupt:
            # Stop the workers now, shielded from a second Ctrl-C, rather than when the
            # generator is collected; the caller reports the interruption.
            _stop_workers(results, bar)
            raise
        pending = failed_now
    bar.close()

    if store is not None and (computed or not store.table_is_current()):
        store.save_table()  # the one file to commit: every run of the folder, with its curve
    runs, curves = store.load([k.run_id for k in keys]) if store is not None else tables_from_records(records)
    return BenchmarkResult(config, runs, curves, store.out_dir if store else None, computed, time.perf_counter() - start)
