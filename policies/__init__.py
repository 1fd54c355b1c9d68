"""The released policies and their model cards: ``NAME.safetensors`` and ``NAME.md``.

This folder (``policies/`` in the repository, with the released stopping rules in
``stopping/``) is the package :mod:`metalearn.policies.released`
(``[tool.setuptools.package-dir]`` in pyproject.toml), so the wheel ships it as
``metalearn/policies/released/`` and :mod:`importlib.resources` finds it
(:func:`metalearn.policies.file.policy_search_dirs`): ``load_policy("default")`` works from a
wheel install as from a checkout.
"""
