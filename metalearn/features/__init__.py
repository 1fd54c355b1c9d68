"""Dataset-agnostic features of candidates and loops, computed from the metadata history.

Two schemas: ``pool`` (:class:`PoolFeatureExtractor`: feature values, labels and the multi-loop
history; version 2 adds cluster coverage and within-batch features,
:class:`ClusterPoolFeatureExtractor`; version 3 a loop context that describes the task,
:class:`TaskContextFeatureExtractor`) and ``proba`` (:class:`ProbaFeatureExtractor`: class probabilities of the
unlabeled records alone, for libraries such as baal that hand a strategy nothing else).
Every schema is registered in :mod:`metalearn.features.registry` with its extractor,
pre-selection, pick loop and uses.
"""

from metalearn.features.pool_features import PoolFeatureExtractor, window_slope
from metalearn.features.cluster_features import ClusterPoolFeatureExtractor
from metalearn.features.task_context_features import POOL_SCHEMA_V3, TaskContextFeatureExtractor
from metalearn.features.proba_features import ProbaFeatureExtractor, ProbaPoolFeatures
from metalearn.features.schema import POOL_SCHEMA, POOL_SCHEMA_V2, PROBA_SCHEMA, FeatureSchema
from metalearn.features.schema_spec import BatchAwareSchema, RegisteredSchema
from metalearn.features.registry import SCHEMAS, get_schema, registered_schemas, schema_entry

__all__ = [
    "FeatureSchema",
    "POOL_SCHEMA",
    "POOL_SCHEMA_V2",
    "POOL_SCHEMA_V3",
    "PROBA_SCHEMA",
    "SCHEMAS",
    "get_schema",
    "RegisteredSchema",
    "BatchAwareSchema",
    "registered_schemas",
    "schema_entry",
    "PoolFeatureExtractor",
    "ClusterPoolFeatureExtractor",
    "TaskContextFeatureExtractor",
    "ProbaFeatureExtractor",
    "ProbaPoolFeatures",
    "window_slope",
]
