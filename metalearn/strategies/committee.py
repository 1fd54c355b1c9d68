"""Query by committee with a bagging committee (Abe & Mamitsuka 1998)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone

from metalearn.common.validation import check_positive_int, check_probabilities
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.strategies.registry import register_strategy

__all__ = ["QueryByCommittee", "MAX_MEMBERS"]

#: Largest committee: each member is a fitted copy of the classifier, fitted again at every query.
MAX_MEMBERS = 1000

_METHODS = ("vote_entropy", "kl_divergence")


@register_strategy
class QueryByCommittee(QueryStrategy):
    """Train a committee of copies of the classifier on bootstrap samples; pick disagreement.

    Each member is a clone of ``clf`` fitted on a stratified bootstrap sample of the labeled
    records (every class keeps at least one record, so every member can be fitted).

    Parameters
    ----------
    n_members : int
        Committee size, in [2, :data:`MAX_MEMBERS`].
    method : {"vote_entropy", "kl_divergence"}
        Disagreement measure: entropy of the members' votes (normalised by its maximum), or
        mean KL divergence of each member's probabilities to the consensus.
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.
    """

    name = "qbc"
    min_labeled_classes = 2

    def __init__(
        self, n_members: int = 5, method: str = "vote_entropy", *, missing_label: Any = np.nan, random_state: Any = None
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.n_members = n_members
        self.method = method

    def _validate_params(self) -> None:
        check_positive_int(self.n_members, "n_members", minimum=2, maximum=MAX_MEMBERS)
        if not isinstance(self.method, str) or self.method not in _METHODS:
            raise InvalidInputError(f"method must be one of {_METHODS}, got {self.method!r}"[:300])

    def _members(self, ctx: QueryContext) -> list[Any]:
        rows = np.flatnonzero(ctx.labeled)
        # Labels in an object array (missing_label=None, a stream's stand-in labels) take their
        # own dtype: scikit-learn refuses object labels as "Unknown label type".
        y_lab = np.asarray(ctx.y[rows].tolist()) if ctx.y.dtype == object else ctx.y[rows]
        y_fit = np.empty(ctx.y.shape[0], dtype=y_lab.dtype)
        y_fit[rows] = y_lab
        groups = [rows[y_lab == c] for c in np.unique(y_lab)]
        if len(groups) < 2:
            raise InvalidInputError("query by committee needs labeled records of at least two classes")
        members = []
        for _ in range(check_positive_int(self.n_members, "n_members", minimum=2, maximum=MAX_MEMBERS)):
            sample = np.concatenate([ctx.rng.choice(g, size=g.size, replace=True) for g in groups])
            try:
                member = clone(ctx.clf)
            except (TypeError, RuntimeError) as exc:  # no get_params, or a constructor that alters its params
                raise InvalidTypeError(
                    f"query by committee clones the classifier, but {type(ctx.clf).__name__} cannot be cloned: {exc}"
                ) from None
            if "random_state" in member.get_params():
                member.set_params(random_state=int(ctx.rng.integers(2**31 - 1)))
            try:
                members.append(member.fit(ctx.X[sample], y_fit[sample]))
            except (ValueError, TypeError, ArithmeticError) as exc:
                # The user's classifier cannot be fitted on the pool (e.g. float32 overflow).
                raise InvalidInputError(
                    f"query by committee could not fit a copy of {type(ctx.clf).__name__} on the labeled records: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        return members

    def disagreement(self, X: np.ndarray) -> np.ndarray:
        """Disagreement of the last committee on records ``X`` (n, n_features); shape (n,).

        Vote entropy is normalised by its maximum, log(min(n_members, n_classes)).
        """
        members = self.committee_
        if self.method == "vote_entropy":
            votes = np.stack([m.predict(X) for m in members])  # (members, n)
            classes = members[0].classes_
            counts = np.stack([(votes == c).sum(axis=0) for c in classes], axis=1) / len(members)
            p = np.clip(counts, 1e-12, 1.0)
            return -(counts * np.log(p)).sum(axis=1) / np.log(min(len(members), classes.size))
        probas = np.stack([check_probabilities(m.predict_proba(X), X.shape[0]) for m in members])  # (members, n, C)
        consensus = probas.mean(axis=0)
        ratio = np.log(np.clip(probas, 1e-12, 1.0)) - np.log(np.clip(consensus, 1e-12, 1.0))[None]
        return (probas * ratio).sum(axis=2).mean(axis=0)

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        if self.method not in _METHODS:
            raise InvalidInputError(f"method must be one of {_METHODS}, got {self.method!r}")
        self.committee_ = self._members(ctx)
        try:
            scores = self.disagreement(ctx.X[ctx.unlabeled_indices])
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise InvalidInputError(
                f"the committee's copies of {type(ctx.clf).__name__} failed to predict the pool: {type(exc).__name__}: {exc}"
            ) from exc
        return ctx.unlabeled_indices[select_top(scores, batch_size, ctx.rng)]
