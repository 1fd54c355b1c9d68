"""A metalearn policy as a baal heuristic.

baal's ``ActiveLearningLoop`` calls ``heuristic.get_ranks(predictions)`` with the predictions of
``get_probabilities(pool)`` alone: an array of shape ``(n_samples, n_classes)`` or
``(n_samples, n_classes, n_iterations)`` (MC dropout passes or ensemble members), without the
records' features, labels or ids, and labels the first ``query_size`` records of the returned
ranking. A policy serves it only if it was trained on the probabilities-only feature schema
``proba`` (``metalearn train --schema proba``); :class:`PolicyHeuristic` refuses any other
with a :class:`~metalearn.exceptions.FeatureSchemaError`.

:class:`PolicyHeuristic` is a ``baal.active.heuristics.AbstractHeuristic`` and follows baal's
conventions:

- predictions as baal hands them: numpy arrays or torch tensors, a one-element list, or a
  generator of chunks (concatenated, since the features compare records across the pool);
  logits are turned into probabilities as baal's own heuristics do (``to_prob``); a single
  sigmoid column becomes two classes;
- ``get_ranks(predictions)`` returns ``(ranks, scores)``: positions in ``predictions``, best
  first, and one finite score per record (higher = label sooner, ``reverse=True``);
  ``heuristic(predictions)`` returns the ranks, ``get_uncertainties(predictions)`` the scores.

How the ranking is built, as a policy queries everywhere else: the policy scores K candidates
(its recorded ``n_candidates``; half smallest-margin, half random, as in training), and with
``query_size`` given fills the first ``query_size`` ranks one pick at a time (each re-scored
without the earlier picks); then come the other candidates by score, then the records the
policy did not score, smallest margin first. Their scores are the lowest candidate score
minus 1 minus their margin, so every score is finite and sorts in the ranking's order
(except within the sequentially filled head). ``candidate_selection="all"`` scores every
record.

A baal heuristic is not told how many records are labeled: pass ``dataset=`` (the
``ActiveLearningDataset``) to give the policy the labeled count and the pool size (the
``labeled_known`` context feature is 0 otherwise; training covered both cases).

Example
-------
>>> from baal.active import ActiveLearningDataset, ActiveLearningLoop
>>> from metalearn.integrations.baal import PolicyHeuristic
>>> dataset = ActiveLearningDataset(train_set)
>>> dataset.label_randomly(10)
>>> heuristic = PolicyHeuristic("default-proba", query_size=10, dataset=dataset, random_state=0)
>>> loop = ActiveLearningLoop(dataset, get_probabilities, heuristic=heuristic, query_size=10)
>>> for step in range(10):                                   # doctest: +SKIP
...     train(model, dataset)                                # your training on the labeled part
...     loop.step()                                          # predicts the pool, labels 10 records
"""

from __future__ import annotations

import os
import types
from typing import Any

import numpy as np

from metalearn.integrations import missing_dependency

try:
    from baal.active.heuristics import AbstractHeuristic
    from baal.utils.array_utils import to_prob
except ImportError as _exc:  # pragma: no cover - exercised only without the library
    raise missing_dependency("baal", "baal", extra="baal") from _exc

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import FeatureSchemaError, InvalidInputError, InvalidTypeError
from metalearn.features.proba_features import ProbaFeatureExtractor
from metalearn.features.registry import schema_entry
from metalearn.policies.file import PolicyFile, read_policy
from metalearn.policies.strategy import CANDIDATE_SELECTIONS, DEFAULT_N_CANDIDATES
from metalearn.strategies.base import select_top

__all__ = ["PolicyHeuristic", "DEFAULT_PROBA_POLICY"]

#: The released probabilities-only policy a heuristic loads by default.
DEFAULT_PROBA_POLICY = "default-proba"


def _as_array(predictions: Any) -> np.ndarray:
    if hasattr(predictions, "detach") and hasattr(predictions, "cpu"):  # a torch tensor
        predictions = predictions.detach().cpu().numpy()
    return np.asarray(predictions)


class PolicyHeuristic(AbstractHeuristic):
    """Rank baal's pool with a learned metalearn policy of the ``proba`` schema.

    Parameters
    ----------
    policy : str, path-like or PolicyFile, default="default-proba"
        A released policy name, a policy file, or a policy already read; its feature schema
        must be probabilities-only (``proba``).
    query_size : int or None
        The loop's ``query_size``: the first ``query_size`` ranks are filled one pick at a
        time, as the policy fills a batch everywhere else. None: one scoring pass.
    n_candidates : int or None
        Candidates the policy scores (None: the policy's recorded value, else 256).
    candidate_selection : {"mixed", "random", "all"}
        How candidates are pre-selected (``"mixed"`` as in training).
    dataset : object with ``n_labelled`` and ``n_unlabelled``, optional
        baal's ``ActiveLearningDataset``, read at every call for the labeled count and the
        pool size (useful with ``max_sample``, when the predictions cover a subset).
    random_state : int, numpy Generator or None
        Seeds candidate sampling and tie-breaking.

    Attributes
    ----------
    policy_file : PolicyFile
    registered_schema : RegisteredSchema
        The policy's schema in the registry: its pre-selection and pick loop.
    extractor_ : ProbaFeatureExtractor
        The features of the last call.
    last_candidates_ : ndarray of int
        Positions of the records the policy scored in the last call.

    Raises
    ------
    FeatureSchemaError
        The policy's schema needs more than predictions (e.g. ``pool@1``).
    PolicyFileError, UnknownNameError
        The policy cannot be read.
    """

    def __init__(
        self,
        policy: str | os.PathLike[str] | PolicyFile = DEFAULT_PROBA_POLICY,
        *,
        query_size: int | None = None,
        n_candidates: int | None = None,
        candidate_selection: str = "mixed",
        dataset: Any = None,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(reverse=True, reduction="none")
        if isinstance(policy, PolicyFile):
            self.policy_file = policy
        elif isinstance(policy, (str, os.PathLike)):
            self.policy_file = read_policy(policy)
        else:
            raise InvalidTypeError(
                f"policy must be a PolicyFile, a path or a released policy name, got {type(policy).__name__}"
            )
        schema = self.policy_file.schema
        # The registry says what the schema needs; its pre-selection and pick loop serve _rank.
        self.registered_schema = schema_entry(schema)
        if not self.registered_schema.probabilities_only:
            where = f" {str(self.policy_file.path)!r}" if self.policy_file.path else ""
            raise FeatureSchemaError(
                f"policy{where} uses the feature schema {schema.id}, which needs the pool's feature values, labels "
                "and history; a baal heuristic receives predictions only. Use a policy trained on the "
                "probabilities-only schema (metalearn train --schema proba, or the released 'default-proba')"
            )
        if query_size is not None:
            check_positive_int(query_size, "query_size")
        if n_candidates is not None:
            check_positive_int(n_candidates, "n_candidates")
        if candidate_selection not in CANDIDATE_SELECTIONS:
            raise InvalidInputError(
                f"unknown candidate_selection {candidate_selection!r}; valid values: {', '.join(CANDIDATE_SELECTIONS)}"
            )
        if dataset is not None and not (hasattr(dataset, "n_labelled") and hasattr(dataset, "n_unlabelled")):
            raise InvalidTypeError(
                f"dataset must be baal's ActiveLearningDataset (with n_labelled and n_unlabelled), got {type(dataset).__name__}"
            )
        self.query_size = query_size
        self.n_candidates = n_candidates
        self.candidate_selection = candidate_selection
        self.dataset = dataset
        self.random_state = random_state
        self.rng_ = np.random.default_rng(random_state)

    # -- inputs ----------------------------------------------------------------------------
    def _predictions(self, predictions: Any) -> np.ndarray:
        """baal's predictions as probabilities of shape (n, C, T)."""
        if isinstance(predictions, types.GeneratorType):
            chunks = [_as_array(chunk) for chunk in predictions]
            if not chunks:
                raise InvalidInputError("the predictions generator is empty: there is no record to rank")
            predictions = np.concatenate(chunks, axis=0)
        if isinstance(predictions, (list, tuple)):
            if len(predictions) != 1:
                raise InvalidInputError(
                    f"the policy ranks one array of predictions of shape (n_samples, n_classes[, n_iterations]); "
                    f"got a sequence of {len(predictions)} (multi-output models are not supported)"
                )
            predictions = predictions[0]
        array = _as_array(predictions)
        if array.dtype.kind not in "iufb":
            raise InvalidInputError(f"predictions must be numeric, got dtype {array.dtype}")
        if array.ndim not in (2, 3) or array.shape[0] == 0:
            raise InvalidInputError(
                "predictions must have shape (n_samples, n_classes) or (n_samples, n_classes, n_iterations) with at "
                f"least one sample, got shape {array.shape}; the policy ranks whole records (reduce pixel or token "
                "dimensions first)"
            )
        array = array.astype(np.float64)
        if not np.all(np.isfinite(array)):
            raise InvalidInputError("predictions hold NaN or infinite values")
        array = np.asarray(to_prob(array), dtype=np.float64)  # logits -> probabilities, as baal's heuristics
        if array.shape[1] == 1:  # one sigmoid output: the probability of the positive class
            array = np.concatenate([1.0 - array, array], axis=1)
        return array

    def _counts(self, n: int) -> tuple[int | None, int | None]:
        if self.dataset is None:
            return None, None
        n_labeled, n_unlabeled = int(self.dataset.n_labelled), int(self.dataset.n_unlabelled)
        return n_labeled, max(n_unlabeled, n)

    # -- scoring ---------------------------------------------------------------------------
    def _rank(self, predictions: Any) -> tuple[np.ndarray, np.ndarray]:
        preds = self._predictions(predictions)
        n = preds.shape[0]
        n_labeled, n_unlabeled = self._counts(n)
        extractor = ProbaFeatureExtractor()
        extractor.update(preds, n_labeled=n_labeled, n_unlabeled=n_unlabeled)
        self.extractor_ = extractor
        policy = self.policy_file
        k = self.n_candidates or policy.n_candidates or DEFAULT_N_CANDIDATES
        head = min(self.query_size or 1, n)
        k = max(k, head)
        rng = self.rng_
        everything = np.arange(n, dtype=np.int64)
        if self.candidate_selection == "all" or n <= k:
            candidates = everything
        elif self.candidate_selection == "random":
            candidates = np.sort(rng.choice(n, size=k, replace=False))
        else:
            candidates = self.registered_schema.preselect(extractor, everything, extractor.margin, k, rng)
        features = np.clip(extractor.candidate_features(candidates), -1.0, 1.0)
        context = np.clip(extractor.context_features(), -1.0, 1.0)
        # The head (query_size ranks, at least the first) is filled one pick at a time.
        picks, first32, _ = self.registered_schema.pick_batch(
            policy.scorer, extractor, features, context, head, lambda s: int(select_top(s.astype(np.float64), 1, rng)[0])
        )
        first = first32.astype(np.float64)
        rest = np.setdiff1d(np.arange(candidates.size), picks)
        # Best first, random tie-break (as select_top): sort by (-score, random key).
        rest = rest[np.lexsort((rng.random(rest.size), -first[rest]))]
        scores = np.empty(n, dtype=np.float64)
        scores[candidates] = first
        others = np.setdiff1d(everything, candidates)
        if others.size:
            margin = extractor.margin[others]
            scores[others] = first.min() - 1.0 - margin
            others = others[np.lexsort((rng.random(others.size), margin))]
        ranks = np.concatenate([candidates[picks], candidates[rest], others])
        self.last_candidates_ = candidates
        return ranks, scores

    def compute_score(self, predictions: Any, target_predictions: Any = None) -> np.ndarray:
        """One score per record, shape (n_samples,); higher = label sooner (see the module notes)."""
        return self._rank(predictions)[1]

    def get_uncertainties(self, predictions: Any, target_predictions: Any = None) -> np.ndarray:
        return self.compute_score(predictions, target_predictions)

    def get_ranks(self, predictions: Any, target_predictions: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ranks, scores)``: positions in ``predictions`` best first, and each record's score."""
        return self._rank(predictions)

    def __repr__(self) -> str:
        path = self.policy_file.path
        return (
            f"PolicyHeuristic(policy={str(path) if path else 'in memory'!r}, query_size={self.query_size}, "
            f"candidate_selection={self.candidate_selection!r})"
        )
