"""Querying strategies behind one interface, the registry that finds them by name, and the
resolver (:func:`resolve_strategy`) from any strategy or policy name to a ready strategy.

Importing this package registers every classic strategy.
"""

# Import order is registration order: the order names are listed in the CLI and reports.
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.strategies.random_sampling import RandomSampling
from metalearn.strategies.uncertainty import EntropySampling, LeastConfidence, MarginSampling, UncertaintySampling
from metalearn.strategies.density import DensityWeightedSampling
from metalearn.strategies.coreset import KCenterGreedy
from metalearn.strategies.committee import QueryByCommittee
from metalearn.strategies.albl import ALBL
from metalearn.strategies.typiclust import TypiClust
from metalearn.strategies.probcover import ProbCover
from metalearn.strategies.switch import ProbCoverThenMargin, RepresentativeThenMargin, TypiClustThenMargin
from metalearn.strategies.registry import (
    STRATEGIES,
    get_strategy_class,
    make_strategy,
    register_strategy,
    strategy_names,
)
from metalearn.strategies.resolve import POLICY_PREFIX, resolve_strategy, strategy_label

# Names people use in the literature.
register_strategy(KCenterGreedy, aliases=("coreset", "core_set", "kcenter"))
register_strategy(QueryByCommittee, aliases=("query_by_committee",))
register_strategy(DensityWeightedSampling, aliases=("information_density", "density"))
register_strategy(LeastConfidence, aliases=("uncertainty", "least_confident"))
register_strategy(MarginSampling, aliases=("smallest_margin", "margin_sampling"))

__all__ = [
    "QueryStrategy",
    "QueryContext",
    "select_top",
    "RandomSampling",
    "UncertaintySampling",
    "LeastConfidence",
    "MarginSampling",
    "EntropySampling",
    "DensityWeightedSampling",
    "KCenterGreedy",
    "QueryByCommittee",
    "ALBL",
    "TypiClust",
    "ProbCover",
    "RepresentativeThenMargin",
    "TypiClustThenMargin",
    "ProbCoverThenMargin",
    "STRATEGIES",
    "register_strategy",
    "make_strategy",
    "strategy_names",
    "get_strategy_class",
    "resolve_strategy",
    "strategy_label",
    "POLICY_PREFIX",
]
