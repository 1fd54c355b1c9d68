"""Parallel execution for the trainers: an ordered map over joblib processes or a Dask cluster."""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from metalearn.exceptions import InvalidInputError

__all__ = ["parallel_map"]

# =============================================================================================
# Parallel map: joblib processes or a Dask cluster, results in input order
# =============================================================================================
_DASK_CLIENTS: dict[str, Any] = {}


def _dask_client(address: str) -> Any:
    """A Dask client for ``address`` (created once per process and reused across calls).

    ``"local"`` / ``"local:N"`` starts a local cluster of N single-threaded worker processes;
    anything else is a scheduler address (``tcp://host:8786``).
    """
    if address in _DASK_CLIENTS:
        return _DASK_CLIENTS[address]
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise InvalidInputError("--dask needs the distributed package: pip install 'metalearn-al[dask]'") from None
    if address.startswith("local"):
        _, _, workers = address.partition(":")
        try:
            n_workers = int(workers) if workers else None
        except ValueError:
            raise InvalidInputError(f"dask address {address!r}: expected 'local' or 'local:N'") from None
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)

        def _close() -> None:  # pragma: no cover - interpreter shutdown
            with contextlib.suppress(Exception):
                client.close()
                cluster.close()

        atexit.register(_close)
    else:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise InvalidInputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    _DASK_CLIENTS[address] = client
    return client


def parallel_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    n_jobs: int = 1,
    dask: str | None = None,
    desc: str | None = None,
) -> list[Any]:
    """``[fn(item) for item in items]``, possibly in parallel; results keep the input order.

    Parameters
    ----------
    fn : callable
        A top-level (picklable) function of one argument.
    items : iterable
    n_jobs : int
        joblib worker processes; 1 runs inline (no process, easiest to debug), -1 all cores.
        Ignored when ``dask`` is given.
    dask : str or None
        A Dask scheduler address, or ``"local"`` / ``"local:N"`` for a local cluster (started
        once per process and reused).
    desc : str or None
        Show a tqdm progress bar with this description.

    Returns
    -------
    list
        One result per item, in the order of ``items``. Seeds must come with the items (never
        from the worker), so the result does not depend on ``n_jobs`` or the cluster.
    """
    from tqdm.auto import tqdm

    items = list(items)
    bar = tqdm(total=len(items), desc=desc, leave=False, disable=desc is None)
    try:
        if dask:
            from dask.distributed import as_completed

            client = _dask_client(dask)
            futures = client.map(fn, items, pure=False)
            for _ in as_completed(futures):
                bar.update()
            return list(client.gather(futures))
        if n_jobs == 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(fn(item))
                bar.update()
            return results
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1, pre_dispatch="2*n_jobs")
        results = []
        for result in parallel(delayed(fn)(item) for item in items):
            results.append(result)
            bar.update()
        return results
    finally:
        bar.close()
