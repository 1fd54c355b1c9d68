"""Optional dependencies: which extra brings what, and the error when one is missing.

The core install loads and queries policies and runs every classic strategy, the
integrations, ``next-batch`` and ``benchmark`` with numpy, scikit-learn and safetensors.
Meta-training needs the ``train`` extra (torch, Stable-Baselines3, sb3-contrib, cma) and the
benchmark's plots the ``plot`` extra (matplotlib, scikit-posthocs); the modules that need them
import them only when called, and call :func:`require_extra` first so a missing one fails
with the install command instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib.util

from metalearn.exceptions import MissingDependencyError

__all__ = ["EXTRAS", "extra_installed", "require_extra"]

#: The import names each extra provides (pyproject.toml's optional dependencies).
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "stable_baselines3", "sb3_contrib", "cma"),
    "plot": ("matplotlib", "scikit_posthocs"),
    "parquet": ("pyarrow",),
}


def _missing(extra: str) -> list[str]:
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def extra_installed(extra: str) -> bool:
    """Whether every package of ``extra`` can be imported (nothing is imported to find out)."""
    return not _missing(extra)


def require_extra(extra: str, what: str) -> None:
    """Raise :class:`MissingDependencyError` naming ``extra`` if any of its packages is missing.

    Parameters
    ----------
    extra : str
        A key of :data:`EXTRAS`.
    what : str
        What needs it, for the message (e.g. ``"meta-training (metalearn train)"``).
    """
    missing = _missing(extra)
    if missing:
        raise MissingDependencyError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            f'pip install "metalearn-al[{extra}]"'
        )
