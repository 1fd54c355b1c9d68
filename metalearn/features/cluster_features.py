"""The ``pool@2`` features: ``pool@1`` plus cluster coverage, typicality and within-batch distance.

:class:`ClusterPoolFeatureExtractor` adds to :class:`~metalearn.features.pool_features.PoolFeatureExtractor`
what the low-budget strategies (TypiClust, ProbCover) look at, so a learned policy can decide
*when* to move from representative to uncertain records:

- a k-means partition of the pool with about as many clusters as labels after this batch
  (TypiClust's rule), at the power of two at or above that count, so each pool is clustered at
  most log2(n) times over a whole run (partitions are cached per level);
- whether a candidate's cluster already holds a label, how large the cluster is and how typical
  the candidate is within it (its density rank among the cluster's records);
- the distance to the labeled records *and the earlier picks of the batch*.

The two batch-aware features change after each pick: :meth:`~ClusterPoolFeatureExtractor.note_pick`
updates them for the remaining candidates, so a policy that fills a batch one pick at a time
sees the regions its earlier picks already cover.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from metalearn.common.candidates import mixed_representative_candidates
from metalearn.common.clustering import kmeans_partition
from metalearn.common.geometry import min_sq_distances
from metalearn.common.uncertainty import margins
from metalearn.features.pool_features import PoolFeatureExtractor
from metalearn.features.schema import POOL_SCHEMA_V2, FeatureSchema
from metalearn.features.schema_spec import BatchAwareSchema

__all__ = ["ClusterPoolFeatureExtractor", "cluster_level", "MAX_CLUSTERS", "REGISTRATION"]

#: Most clusters of a partition (TypiClust's paper uses 500; a power of two here).
MAX_CLUSTERS = 512


def cluster_level(n_labeled: int, batch_size: int, n_pool: int) -> int:
    """Clusters of the partition used in a loop: the power of two >= labels after the batch.

    Clipped to [2, min(MAX_CLUSTERS, n_pool)].
    """
    target = max(int(n_labeled) + int(batch_size), 2)
    level = 1 << int(np.ceil(np.log2(target)))
    return int(max(2, min(level, MAX_CLUSTERS, n_pool)))


class ClusterPoolFeatureExtractor(PoolFeatureExtractor):
    """Computes the ``pool@2`` schema's features for one pool across loops.

    Parameters
    ----------
    X, window, label_budget, batch_size, n_density_reference, n_density_neighbors, seed
        See :class:`~metalearn.features.pool_features.PoolFeatureExtractor`; ``seed`` also
        seeds the k-means partitions.

    Attributes
    ----------
    partitions : dict of int to dict of str to ndarray
        The k-means partitions computed so far, by number of clusters: ``labels`` (n_pool,),
        ``sizes``, ``typicality_rank`` and ``order`` (see :meth:`_partition`).
    """

    schema: FeatureSchema = POOL_SCHEMA_V2

    def __init__(self, X: np.ndarray, **kwargs: Any) -> None:
        super().__init__(X, **kwargs)
        # A seed of its own for the partitions (default_rng passes a Generator through).
        self._cluster_seed = int(np.random.default_rng(kwargs.get("seed")).integers(0, 2**31 - 1))
        self.partitions: dict[int, dict[str, np.ndarray]] = {}
        self._batch: dict[str, np.ndarray] = {}

    def reindex(self, old_positions: np.ndarray, X: np.ndarray) -> None:
        super().reindex(old_positions, X)
        self.partitions = {}  # rows changed: partitions are recomputed on the new pool

    # -- the partition of this loop ---------------------------------------------------------
    def _partition(self) -> dict[str, np.ndarray]:
        """The partition of this loop's level and what depends on it alone (computed once per level).

        ``labels`` (n_pool,), ``sizes`` (m,), ``typicality_rank`` (n_pool,): the density rank of
        each record within its cluster, and ``order`` (n_pool,): the records sorted by cluster,
        then by typicality (so the most typical record of a cluster ends its segment).
        """
        m = cluster_level(int(self.labeled.sum()), self.batch_size, self.n_pool)
        if m not in self.partitions:
            labels = kmeans_partition(self.X, m, seed=self._cluster_seed + m)
            sizes = np.bincount(labels, minlength=m)
            order = np.lexsort((self.density, labels))
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            position = np.empty(self.n_pool, dtype=np.float64)
            position[order] = np.arange(self.n_pool) - np.repeat(starts, sizes)
            denominator = np.maximum(sizes[labels] - 1, 1)
            self.partitions[m] = {
                "labels": labels,
                "sizes": sizes.astype(np.float64),
                "typicality_rank": np.where(sizes[labels] > 1, position / denominator, 1.0),
                "order": order,
            }
        return self.partitions[m]

    def _cluster_arrays(self) -> dict[str, np.ndarray]:
        """Per-loop arrays: cluster of each record, covered clusters, sizes, typicality rank."""
        if "cluster_labels" not in self._cache:
            part = self._partition()
            covered = np.zeros(part["sizes"].shape[0], dtype=bool)
            covered[np.unique(part["labels"][self.labeled])] = True
            self._cache["cluster_labels"] = part["labels"]
            self._cache["cluster_covered"] = covered
            self._cache["cluster_sizes"] = part["sizes"]
            self._cache["typicality_rank"] = part["typicality_rank"]
            self._cache["cluster_order"] = part["order"]
        return self._cache

    def candidate_features(self, candidates: np.ndarray) -> np.ndarray:
        """Features of the given pool records, shape (k, 20), float32; see :class:`PoolFeatureExtractor`.

        Also starts the batch: :meth:`note_pick` updates the two batch-aware columns of exactly
        these candidates.
        """
        idx = np.asarray(candidates, dtype=np.int64)
        base = super().candidate_features(idx)
        arrays = self._cluster_arrays()
        labels = arrays["cluster_labels"]
        m = arrays["cluster_sizes"].shape[0]
        share = arrays["cluster_sizes"][labels[idx]] / self.n_pool * m
        distance_ratio = self._cached("distance_ratio")[idx]
        self._batch = {
            "candidates": idx,
            "covered": arrays["cluster_covered"].copy(),
            "distance_ratio": distance_ratio.astype(np.float64).copy(),
        }
        extra = np.stack(
            [
                (~arrays["cluster_covered"][labels[idx]]).astype(np.float64),
                share / (1.0 + share),
                arrays["typicality_rank"][idx],
                distance_ratio / (1.0 + distance_ratio),
            ],
            axis=1,
        )
        return np.concatenate([base, extra.astype(np.float32)], axis=1)

    def note_pick(self, features: np.ndarray, position: int) -> None:
        """Update the batch-aware columns of ``features`` after candidate ``position`` was picked.

        Parameters
        ----------
        features : ndarray of float32, shape (k, 20)
            The rows :meth:`candidate_features` returned for this loop's candidates, changed in
            place: ``cluster_unlabeled`` becomes 0 for the candidates of the pick's cluster, and
            ``distance_to_selected`` counts the pick as selected.
        position : int
            Row of the pick in ``features``.
        """
        batch = self._batch
        idx = batch["candidates"]
        labels = self._cluster_arrays()["cluster_labels"]
        names = self.schema.candidate_features
        pick = int(idx[position])
        same = labels[idx] == labels[pick]
        features[same, names.index("cluster_unlabeled")] = 0.0
        distance = np.sqrt(min_sq_distances(self.X[idx], self.X[[pick]])) / self.distance_scale
        np.minimum(batch["distance_ratio"], distance, out=batch["distance_ratio"])
        ratio = batch["distance_ratio"]
        features[:, names.index("distance_to_selected")] = np.clip(ratio / (1.0 + ratio), -1.0, 1.0)

    def with_exact_margins(self, features: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """``features`` as float64 with the ``margin`` column recomputed from ``proba`` in float64.

        The history keeps margins in float32, which turns near-ties into ties broken at random;
        with the exact margins, as margin sampling computes them, a policy whose correction is
        zero ranks exactly as margin sampling does.

        Parameters
        ----------
        features : ndarray, shape (k, 20)
            Candidate features (:meth:`candidate_features`, clipped).
        proba : ndarray, shape (k, n_classes)
            The model's probabilities for the same candidates, in the same order.

        Returns
        -------
        ndarray of float64, shape (k, 20)
        """
        exact = np.asarray(features, dtype=np.float64).copy()
        exact[:, self.schema.candidate_features.index("margin")] = margins(proba)
        return exact

    def pick_batch(
        self, scorer: Any, features: np.ndarray, context: np.ndarray, n_picks: int, choose: Callable[[np.ndarray], int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill a batch one pick at a time, re-scoring after each pick with the batch-aware columns updated.

        The ``pool@2`` counterpart of the scorers' ``pick_sequentially``: there the features
        stay fixed; here :meth:`note_pick` changes them after every pick, so every step scores
        anew.

        Parameters
        ----------
        scorer : NumpyScorer or GatedLinearScorer
            Its ``scores(features, context, mask)`` gives ``-inf`` where masked.
        features : ndarray, shape (k, 20)
            The rows :meth:`candidate_features` returned for this loop's candidates (not changed:
            a copy is updated).
        context : ndarray, shape (19,)
        n_picks : int
            At most k.
        choose : callable
            Maps a score vector (k,) to the position picked; breaks ties.

        Returns
        -------
        picks : ndarray of int64, shape (n_picks,)
            Positions into ``features``, in pick order.
        steps : ndarray of float64, shape (n_picks, k)
            The scores each pick was chosen from.
        """
        features = features.copy()
        open_rows = np.ones(features.shape[0], dtype=bool)
        picks = np.empty(n_picks, dtype=np.int64)
        steps = np.empty((n_picks, features.shape[0]), dtype=np.float64)
        for i in range(n_picks):
            steps[i] = scorer.scores(features, context, open_rows)
            picks[i] = choose(steps[i])
            open_rows[picks[i]] = False
            self.note_pick(features, int(picks[i]))
        return picks, steps

    def context_features(self) -> np.ndarray:
        """Per-loop context features, shape (19,), float32."""
        base = super().context_features()
        covered = self._cluster_arrays()["cluster_covered"]
        n_bought = max(int(self.labeled.sum()) - int(self.n_initial_labeled or 0), 0)
        extra = [1.0 - covered.mean(), np.exp(-n_bought / 10.0), np.exp(-n_bought / 30.0)]
        return np.concatenate([base, np.asarray(extra, dtype=np.float32)])

    def preselect(self, available: np.ndarray, margin: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """``pool@2``'s pre-selection: a third smallest-margin, a third representative, the rest random.

        See :func:`~metalearn.common.candidates.mixed_representative_candidates` and
        :meth:`representative_records`; the parameters are those of
        :meth:`PoolFeatureExtractor.preselect`.
        """
        representative = self.representative_records(available, k)
        return mixed_representative_candidates(available, margin, representative, k, rng)

    def representative_records(self, available: np.ndarray, k: int) -> np.ndarray:
        """Up to ``k`` of ``available``: the most typical record of each uncovered cluster, largest first.

        The candidate pre-selection of ``pool@2`` policies offers these besides the
        smallest-margin and random records, so a policy can choose representative records.

        Parameters
        ----------
        available : ndarray of int, shape (n,)
            Pool indices to choose from (the unlabeled records).
        k : int

        Returns
        -------
        ndarray of int64, shape (<= k,)
        """
        arrays = self._cluster_arrays()
        labels_all = arrays["cluster_labels"]
        is_available = np.zeros(self.n_pool, dtype=bool)
        is_available[available] = True
        # Records sorted by (cluster, typicality) once per partition: the last available record
        # of each cluster's segment is its most typical available one (linear time, no sort).
        ordered = arrays["cluster_order"][is_available[arrays["cluster_order"]]]
        clusters = labels_all[ordered]
        last = np.ones(ordered.size, dtype=bool)
        last[:-1] = clusters[1:] != clusters[:-1]
        best = ordered[last]
        uncovered = ~arrays["cluster_covered"][labels_all[best]]
        size = arrays["cluster_sizes"][labels_all[best]]
        # Uncovered clusters first, then by size; stable, so ties keep cluster order.
        ranked = best[np.lexsort((-size, ~uncovered))]
        return ranked[:k].astype(np.int64)


#: ``pool@2`` in the schema registry (:mod:`metalearn.features.registry`): batch-aware picks,
#: exact float64 margins when deployed; every trainer, PoolAL-v0 and streaming use it.
REGISTRATION = BatchAwareSchema(
    schema=POOL_SCHEMA_V2,
    extractor_class=ClusterPoolFeatureExtractor,
    trainers=frozenset({"imitation", "lal", "ppo", "es"}),
    pool_al=True,
    streaming=True,
    exact_margins=True,
)
