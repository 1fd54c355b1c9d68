"""The task suites shipped with metalearn: ``NAME.toml`` here is the suite ``NAME``.

This folder (``envs/`` in the repository) is the package :mod:`metalearn.suites`
(``[tool.setuptools.package-dir]`` in pyproject.toml), so the wheel ships it as
``metalearn/suites/`` and :mod:`importlib.resources` finds it
(:func:`metalearn.tasks.suite.list_task_suites`) in a checkout and a wheel install alike.
"""
