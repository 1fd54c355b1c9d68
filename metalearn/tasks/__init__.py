"""Tasks: datasets, synthetic generators, preprocessing, the task-model zoo and task suites.

A :class:`Task` is one simulated active-learning problem (pool with oracle labels, test
split, model, budget); a :class:`TaskSuite` is a distribution of them, defined in TOML.
"""

from metalearn.tasks.datasets import (
    Dataset,
    default_data_dir,
    iter_manifest_folder,
    list_manifest,
    load_dataset,
    load_datasets,
    load_manifest_folder,
    load_sklearn_dataset,
    load_table,
    SKLEARN_DATASETS,
)
from metalearn.tasks.models import MODEL_NAMES, ModelFactory, canonical_model_name, make_model
from metalearn.tasks.preprocessing import TabularPreprocessor
from metalearn.tasks.suite import TaskSuite, default_task_suite, list_task_suites, load_task_suite
from metalearn.tasks.synthetic import GENERATOR_PARAMETERS, GENERATORS, sample_synthetic_dataset
from metalearn.tasks.task import REGIMES, Task, initial_labeled_set, make_task

__all__ = [
    "Task",
    "make_task",
    "initial_labeled_set",
    "REGIMES",
    "ModelFactory",
    "make_model",
    "MODEL_NAMES",
    "canonical_model_name",
    "TabularPreprocessor",
    "Dataset",
    "SKLEARN_DATASETS",
    "default_data_dir",
    "load_sklearn_dataset",
    "load_table",
    "list_manifest",
    "load_manifest_folder",
    "iter_manifest_folder",
    "load_dataset",
    "load_datasets",
    "GENERATORS",
    "GENERATOR_PARAMETERS",
    "sample_synthetic_dataset",
    "TaskSuite",
    "load_task_suite",
    "default_task_suite",
    "list_task_suites",
]
