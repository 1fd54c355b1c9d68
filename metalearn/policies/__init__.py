"""Learned querying policies: the scorer, the policy file, numpy inference and the trainers.

Importing this package does not import torch; only the trainers and
:mod:`metalearn.policies.torch_scorer` do.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily below, so `import metalearn` stays light
    from metalearn.policies.strategy import PolicyStrategy

__all__ = ["load_policy"]


def load_policy(path_or_name: str | os.PathLike[str], **strategy_params: Any) -> "PolicyStrategy":
    """Load a policy file as a querying strategy (numpy only; torch is never imported).

    Parameters
    ----------
    path_or_name : str or path-like
        A policy file, or the name of a released policy (looked up in the package data
        :mod:`metalearn.policies.released`, the repository's ``policies/`` folder, and in
        ``$METALEARN_POLICY_DIR``).
    **strategy_params
        Passed to :class:`~metalearn.policies.strategy.PolicyStrategy`: ``n_candidates``,
        ``label_budget``, ``candidate_selection``, ``missing_label``, ``random_state``.

    Returns
    -------
    PolicyStrategy
        ``strategy.query(X, y, clf, batch_size=10)`` returns ``batch_size`` distinct indices
        of unlabeled rows; call it once per loop on the same pool.

    Raises
    ------
    PolicyFileError, FeatureSchemaError, UnknownNameError
        The file is missing, unsafe, corrupted or incompatible, or the name is unknown. The
        file is read and checked here, not at the first query.
    """
    from metalearn.policies.file import read_policy
    from metalearn.policies.strategy import PolicyStrategy

    return PolicyStrategy(read_policy(path_or_name), **strategy_params)
