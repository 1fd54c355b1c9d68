"""Dataset-agnostic features of candidates and loops, computed from the metadata history."""

from metalearn.features.pool_features import PoolFeatureExtractor, window_slope
from metalearn.features.schema import POOL_SCHEMA, SCHEMAS, FeatureSchema, get_schema

__all__ = ["FeatureSchema", "POOL_SCHEMA", "SCHEMAS", "get_schema", "PoolFeatureExtractor", "window_slope"]
