"""A labeling workflow without a framework: ``metalearn next-batch``.

Between labeling sessions a person has a table of records and a table of the labels gathered
so far. :func:`next_batch` reads both, fits a task model on the labeled records, asks the
strategy (a learned policy, by default the released ``default`` one, or a classic strategy)
for the next records and writes them, with their scores, to a table to label. Run it again
when the labels come in: the policy's multi-loop metadata history (the predictions of every
earlier run) is kept in a small state file beside the labels, so every loop benefits from
the earlier ones, as it would inside one program.

Tables
------
- records (CSV, TSV or Parquet): an id column (``id`` by default) and the feature columns,
  numeric or categorical, missing values allowed (``TabularPreprocessor`` imputes, one-hot
  encodes and standardises them, fitted on all records). A column named like the label
  column is ignored (never used as a feature).
- labels: the id column and a label column (``label``), for any subset of the records, in
  any order. Ids and labels are read as text (``007`` stays ``007``); rows with an empty label
  are ignored (a way to skip a record); the same id twice with the same label is fine,
  with two different labels an error.

The state file
--------------
``<labels>.metalearn-state`` by default: a :mod:`~metalearn.common.container` file
(safetensors: arrays and a JSON header, no pickle, nothing executable) with a fingerprint of the records (a 64-bit key per id and a hash
of each record's raw values, the feature column names), the loop count, the seed and label
budget of the first run, a log of each run (labeled count, picked ids) and, for a policy, its
metadata history keyed by record id. Records may be added to or removed from the table
between runs (the history follows ids; new records start with an empty history); a state
whose ids are all absent, whose records' values changed, or whose columns differ belongs to
another dataset and is refused (delete it, or pass another ``--state``, to start over). Every
field is checked at read (types, ranges, one log record per loop, the stopping rule's
section): a hand-edited or corrupted state is a :class:`StateFileError`, never a failure
deep in a run.

Several people, one state
-------------------------
Records handed out and not yet labeled are *pending* (the state lists them with the loop that
handed them out): the next run does not hand them out again, so people who ask one after the
other get different records. A record stops being pending when its label appears in the
labels table, or when it is released (``release_pending=True`` / ``--release-pending`` for all,
``release=[ids]`` / ``--release ID,...`` for some). Runs on one state at the same time are
serialised by an exclusive lock on ``<state>.lock`` (held from reading the state to writing
the outputs; a run that waits longer than ``lock_timeout`` stops with
:class:`StateLockedError`). The state and the table to label are written all or none
(:class:`~metalearn.common.atomic.AtomicGroup`, the state first: see
:func:`~metalearn.workflow.outputs._write_outputs`).

Classes
-------
Without ``classes``, any label value is a class, and a value seen for the first time is a new
class (the model and the history widen to it). With ``classes``, a label outside that list
is an error (a typo guard). At least two classes need labeled records before a model can be
fitted; until then ``policy="random"`` picks a first batch without a model.

The package, one job a module: :mod:`~metalearn.workflow.tables` (the records, labels and
to-label tables), :mod:`~metalearn.workflow.state` (the state file and its checks),
:mod:`~metalearn.workflow.reservations` (pending records), :mod:`~metalearn.workflow.advice`
(stopping and schedule advice), :mod:`~metalearn.workflow.outputs` (the all-or-none writes)
and :mod:`~metalearn.workflow.flow` (:func:`next_batch` itself).
"""

from __future__ import annotations

from metalearn.workflow.flow import DEFAULT_BATCH_SIZE, LOCK_TIMEOUT_SECONDS, NextBatch, next_batch
from metalearn.workflow.state import (
    STATE_KIND,
    STATE_SUFFIX,
    StateFileError,
    StateLockedError,
    default_state_path,
    read_state,
)

__all__ = [
    "next_batch", "NextBatch", "StateFileError", "StateLockedError", "default_state_path", "read_state", "STATE_SUFFIX",
    "LOCK_TIMEOUT_SECONDS",
]
