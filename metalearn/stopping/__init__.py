"""When to stop labeling: classic stopping criteria and the learned stopping rule.

``load_stopping_rule("default")`` (a released learned rule, a file, or a classic criterion's
name) returns a rule whose ``should_stop(X, y, clf)`` takes the same arguments as a
strategy's ``query`` and is called once per loop after fitting. Inference needs numpy only;
training (:mod:`metalearn.stopping.training`) uses torch.
"""

from metalearn.stopping.base import StoppingRule, cohen_kappa
from metalearn.stopping.classic import (
    CLASSIC_RULES,
    ClassificationChange,
    FixedBudget,
    MaxConfidence,
    OverallUncertainty,
    StabilizingPredictions,
)
from metalearn.stopping.file import (
    StoppingRuleFile,
    format_stopping_card,
    read_stopping_rule,
    released_stopping_rule_names,
    save_stopping_rule,
)
from metalearn.stopping.learned import GainEstimate, LearnedStoppingRule
from metalearn.stopping.loading import load_stopping_rule, stopping_rule_names

__all__ = [
    "StoppingRule",
    "cohen_kappa",
    "CLASSIC_RULES",
    "StabilizingPredictions",
    "OverallUncertainty",
    "MaxConfidence",
    "ClassificationChange",
    "FixedBudget",
    "LearnedStoppingRule",
    "GainEstimate",
    "StoppingRuleFile",
    "read_stopping_rule",
    "save_stopping_rule",
    "format_stopping_card",
    "released_stopping_rule_names",
    "load_stopping_rule",
    "stopping_rule_names",
]
