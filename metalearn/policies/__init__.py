"""Learned querying policies: the scorer, the policy file, numpy inference and the trainers.

Importing this package does not import torch; only the trainers and
:mod:`metalearn.policies.torch_scorer` do.
"""
