"""The package list, the one build setting pyproject.toml cannot express.

The task suites (``envs/``) and the released policies (``policies/``, with the released
stopping rules in ``policies/stopping/``) live at the top level of the repository and are
shipped as the packages ``metalearn.suites`` and ``metalearn.policies.released``
(``[tool.setuptools.package-dir]`` in pyproject.toml maps them). A ``packages.find`` table only
sees folders under ``metalearn/``, so the mapped packages are added here by name to every
package found there.
"""

from setuptools import find_packages, setup

MAPPED_PACKAGES = ["metalearn.suites", "metalearn.policies.released", "metalearn.policies.released.stopping"]

setup(packages=[*find_packages(include=["metalearn", "metalearn.*"]), *MAPPED_PACKAGES])
