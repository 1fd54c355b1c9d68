"""Drop-in adapters: a metalearn policy as the querying strategy of other active-learning libraries.

One module per library, each importing its library only when it is itself imported, so
``import metalearn`` (and this package) works without any of them:

- :mod:`metalearn.integrations.skactiveml`: :class:`~metalearn.integrations.skactiveml.PolicyQueryStrategy`,
  a scikit-activeml ``SingleAnnotatorPoolQueryStrategy``;
- :mod:`metalearn.integrations.modal`: :func:`~metalearn.integrations.modal.policy_query_strategy`,
  a ``query_strategy`` for modAL's ``ActiveLearner``;
- :mod:`metalearn.integrations.small_text`: :class:`~metalearn.integrations.small_text.PolicyQueryStrategy`,
  a small-text ``QueryStrategy``;
- :mod:`metalearn.integrations.baal`: :class:`~metalearn.integrations.baal.PolicyHeuristic`, a baal
  heuristic; baal hands a heuristic predictions only, so it takes policies of the
  probabilities-only schema ``proba`` (``"default-proba"``).

Every adapter takes ``policy``: a released policy name (``"default"``), a policy file path or a
:class:`~metalearn.policies.file.PolicyFile`, read with :func:`~metalearn.policies.file.read_policy`.
Install the libraries with ``pip install 'metalearn-al[integrations]'``; baal with
``pip install 'metalearn-al[baal]'`` (a separate extra: baal 2.1 declares a dependency on jupyter).

Plain code needs no adapter: ``metalearn.load_policy(name_or_path).query(X, y, clf, batch_size)``.
"""

from __future__ import annotations

from metalearn.exceptions import MetalearnError

__all__ = ["MissingDependencyError", "INTEGRATIONS_EXTRA", "missing_dependency"]

#: The optional extra that installs every supported library.
INTEGRATIONS_EXTRA = "integrations"


class MissingDependencyError(MetalearnError, ImportError):
    """An integration module was imported but its library is not installed."""


def missing_dependency(library: str, module: str, extra: str = INTEGRATIONS_EXTRA) -> MissingDependencyError:
    """The error raised when ``metalearn.integrations.<module>`` cannot import ``library``."""
    return MissingDependencyError(
        f"metalearn.integrations.{module} needs {library}, which is not installed (or failed to import); "
        f"install it with: pip install 'metalearn-al[{extra}]'  (or: pip install {library})"
    )
