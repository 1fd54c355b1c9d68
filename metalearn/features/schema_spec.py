"""What a registered feature schema knows besides its feature names: how it is computed and used.

A :class:`RegisteredSchema` binds a :class:`~metalearn.features.schema.FeatureSchema` to

- the extractor class that computes it on a pool (:meth:`RegisteredSchema.build_extractor`);
- its candidate pre-selection (:meth:`RegisteredSchema.preselect`), the rule its policies are
  trained and queried with;
- its batch pick loop (:meth:`RegisteredSchema.pick_batch`, with :meth:`RegisteredSchema.note_pick`
  for an agent that picks one record at a time);
- where it can be used: the trainers that train it, PoolAL-v0 observations, streaming,
  probabilities-only hosts (baal).

:class:`BatchAwareSchema` is the variant whose features change after each pick of a batch
(``pool@2``). Each schema module declares its entry next to its extractor; the one registry,
:mod:`metalearn.features.registry`, lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from metalearn.common.candidates import mixed_candidates
from metalearn.features.schema import FeatureSchema

__all__ = ["RegisteredSchema", "BatchAwareSchema", "TRAINERS"]

#: The trainers a schema can declare itself trainable by.
TRAINERS: tuple[str, ...] = ("imitation", "lal", "ppo", "es")


@dataclass(frozen=True, repr=False)
class RegisteredSchema:
    """A feature schema with its extractor, pre-selection, pick loop and uses.

    Attributes
    ----------
    schema : FeatureSchema
        Names, version and descriptions of the features.
    extractor_class : type
        Computes the features on one pool. A history schema's class takes
        ``(X, window=, label_budget=, batch_size=, seed=)`` (as
        :class:`~metalearn.features.pool_features.PoolFeatureExtractor`); a probabilities-only
        schema's class takes ``reveal_labeled`` (as
        :class:`~metalearn.features.proba_features.ProbaPoolFeatures`).
    config_name : str
        The name trainer configurations use for it (``"pool"`` is ``pool@1``, so earlier runs
        resume unchanged); defaults to the schema id.
    trainers : frozenset of str
        The trainers (:data:`TRAINERS`) that can train a policy of this schema.
    pool_al : bool
        Whether ``metalearn/PoolAL-v0`` can observe it (``feature_schema=schema.id``).
    streaming : bool
        Whether a streaming policy can compute it (a mini-pool with a history).
    exact_margins : bool
        Whether a deployed policy sees the ``margin`` column recomputed in float64 from the
        classifier's probabilities (the extractor's ``with_exact_margins``) instead of the
        history's float32 copy.
    """

    schema: FeatureSchema
    extractor_class: type
    config_name: str = ""
    trainers: frozenset[str] = field(default_factory=frozenset)
    pool_al: bool = False
    streaming: bool = False
    exact_margins: bool = False

    def __post_init__(self) -> None:
        if not self.config_name:
            object.__setattr__(self, "config_name", self.schema.id)
        unknown = set(self.trainers) - set(TRAINERS)
        if unknown:
            raise ValueError(f"unknown trainers {sorted(unknown)} for schema {self.schema.id}; known: {TRAINERS}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.schema.id!r}, extractor={self.extractor_class.__name__})"

    @property
    def id(self) -> str:
        """``name@version``, as written into policy files."""
        return self.schema.id

    @property
    def probabilities_only(self) -> bool:
        """Whether the features need nothing but the class probabilities of the unlabeled records."""
        return self.schema.probabilities_only

    @property
    def batch_aware(self) -> bool:
        """Whether the features of the other candidates change after each pick of a batch."""
        return False

    # -- the extractor ---------------------------------------------------------------------
    def build_extractor(
        self,
        X: np.ndarray | None = None,
        *,
        window: int = 5,
        label_budget: int = 100,
        batch_size: int = 1,
        seed: int | None = None,
        reveal_labeled: bool = True,
    ) -> Any:
        """A fresh extractor of this schema for the pool ``X``.

        History schemas use ``X``, ``window``, ``label_budget``, ``batch_size`` and ``seed``;
        probabilities-only schemas use ``reveal_labeled`` alone (whether the labeled count is
        passed to the features).
        """
        if self.probabilities_only:
            return self.extractor_class(reveal_labeled=reveal_labeled)
        return self.extractor_class(X, window=window, label_budget=label_budget, batch_size=batch_size, seed=seed)

    # -- candidate pre-selection -----------------------------------------------------------
    def preselect(
        self, extractor: Any, available: np.ndarray, margin: np.ndarray, k: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Up to ``k`` of ``available`` to score, by the rule this schema's policies are trained with.

        Here :func:`~metalearn.common.candidates.mixed_candidates`: ceil(k/2) smallest-margin
        records plus uniformly random ones (the extractor is not needed).

        Parameters
        ----------
        extractor : object or None
            This schema's extractor of the current loop.
        available : ndarray of int, shape (n,)
            Pool indices of the unlabeled records to choose from.
        margin : ndarray of shape (n,)
            Their current margins, aligned with ``available``.
        k : int
        rng : numpy Generator

        Returns
        -------
        ndarray of int64, shape (min(k, n),)
        """
        return mixed_candidates(available, margin, k, rng)

    # -- the batch pick loop ---------------------------------------------------------------
    def pick_batch(
        self,
        scorer: Any,
        extractor: Any,
        features: np.ndarray,
        context: np.ndarray,
        n_picks: int,
        choose: Callable[[np.ndarray], int],
        *,
        record_steps: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Fill a batch one pick at a time, each pick re-scored without the earlier ones.

        The features stay fixed (the scorer's ``pick_sequentially``).

        Parameters
        ----------
        scorer : NumpyScorer or GatedLinearScorer
        extractor : object or None
            This schema's extractor of the current loop (unused here).
        features : ndarray, shape (k, F)
            The candidates' features, in the order of the candidates.
        context : ndarray, shape (G,)
        n_picks : int
            At most k.
        choose : callable
            Maps a score vector (k,) (``-inf`` where masked) to the position picked; breaks ties.
        record_steps : bool
            Also return the scores each pick was chosen from.

        Returns
        -------
        picks : ndarray of int64, shape (n_picks,)
            Positions into ``features``, in pick order.
        first_scores : ndarray, shape (k,)
            The scores before the first pick.
        steps : ndarray of shape (n_picks, k), or None
            The scores before each pick (``-inf`` for the earlier picks); None unless
            ``record_steps``.
        """
        picks, first = scorer.pick_sequentially(features, context, n_picks, choose)
        if not record_steps:
            return picks, first, None
        # Recomputed with the earlier picks masked: the same numbers pick_sequentially compared.
        steps = np.empty((n_picks, features.shape[0]), dtype=np.float32)
        mask = np.ones(features.shape[0], dtype=bool)
        for i, pick in enumerate(picks):
            steps[i] = scorer.scores(features, context, mask)
            mask[pick] = False
        return picks, first, steps

    def note_pick(self, extractor: Any, features: np.ndarray, position: int) -> None:
        """Update ``features`` in place after the candidate at ``position`` was picked (no-op here).

        For an agent that fills a batch itself (PoolAL-v0): ``features`` are the rows the
        extractor last returned, in its candidate order.
        """

    def exact(self, extractor: Any, features: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """The features a deployed policy scores: with float64 margins if :attr:`exact_margins`."""
        if self.exact_margins:
            return extractor.with_exact_margins(features, proba)
        return features


@dataclass(frozen=True, repr=False)
class BatchAwareSchema(RegisteredSchema):
    """A schema whose candidate features change after each pick of a batch (``pool@2``).

    Its extractor provides ``preselect``, ``note_pick`` and ``pick_batch`` (see
    :class:`~metalearn.features.cluster_features.ClusterPoolFeatureExtractor`): the
    pre-selection needs the extractor's clusters, and every pick is followed by a re-scoring
    with the batch-aware columns updated.
    """

    @property
    def batch_aware(self) -> bool:
        return True

    def preselect(
        self, extractor: Any, available: np.ndarray, margin: np.ndarray, k: int, rng: np.random.Generator
    ) -> np.ndarray:
        """The extractor's pre-selection (e.g. a third smallest-margin, a third representative, the rest random)."""
        return extractor.preselect(available, margin, k, rng)

    def pick_batch(
        self,
        scorer: Any,
        extractor: Any,
        features: np.ndarray,
        context: np.ndarray,
        n_picks: int,
        choose: Callable[[np.ndarray], int],
        *,
        record_steps: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """As :meth:`RegisteredSchema.pick_batch`, re-scoring after every pick with the features updated.

        ``features`` must be the rows the extractor's last ``candidate_features`` call returned
        (they are not changed: a copy is updated). The steps are float64 and always returned.
        """
        picks, steps = extractor.pick_batch(scorer, features, context, n_picks, choose)
        return picks, steps[0], steps

    def note_pick(self, extractor: Any, features: np.ndarray, position: int) -> None:
        """The extractor's ``note_pick``: the batch-aware columns count the pick as selected."""
        extractor.note_pick(features, position)
