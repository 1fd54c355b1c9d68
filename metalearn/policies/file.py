"""The policy file: re-exports of the policy format, name resolution and model card.

The policy file is a :mod:`metalearn.common.container` file (safetensors: the scorer's
weights and a JSON model card). Its parts live in modules of one job each:

- :mod:`metalearn.policies.format`: :class:`PolicyFile`, :func:`save_policy`,
  :func:`read_policy` and the format's constants;
- :mod:`metalearn.policies.names`: released names, search folders, :func:`resolve_policy_path`;
- :mod:`metalearn.policies.card`: :func:`format_model_card`.

This module keeps the names importable from ``metalearn.policies.file``.
"""

from __future__ import annotations

from metalearn.policies.card import format_model_card
from metalearn.policies.format import (
    FORMAT,
    FORMAT_VERSION,
    MAX_FILE_BYTES,
    MAX_HEADER_BYTES,
    MAX_METADATA_BYTES,
    MAX_N_CANDIDATES,
    MAX_WINDOW,
    METADATA_KEY,
    POLICY_KIND,
    PolicyFile,
    read_policy,
    save_policy,
)
from metalearn.policies.names import (
    POLICY_DIR_ENV,
    POLICY_SUFFIX,
    names_in_folders,
    policy_search_dirs,
    released_policy_dir,
    released_policy_names,
    resolve_policy_path,
)

__all__ = [
    "PolicyFile",
    "save_policy",
    "read_policy",
    "resolve_policy_path",
    "released_policy_names",
    "released_policy_dir",
    "policy_search_dirs",
    "names_in_folders",
    "format_model_card",
    "FORMAT",
    "FORMAT_VERSION",
    "POLICY_SUFFIX",
    "METADATA_KEY",
    "POLICY_DIR_ENV",
    "POLICY_KIND",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_N_CANDIDATES",
    "MAX_WINDOW",
]
