"""The released policies and their model cards: ``NAME.safetensors`` and ``NAME.md``.

Found with :mod:`importlib.resources` (:func:`metalearn.policies.file.policy_search_dirs`), so
``load_policy("default")`` works from a wheel install as from a checkout.
"""
