"""The task suites shipped with metalearn: ``NAME.toml`` here is the suite ``NAME``.

Found with :mod:`importlib.resources` (:func:`metalearn.tasks.suite.list_task_suites`), so a
wheel install has them too.
"""
