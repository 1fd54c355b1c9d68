"""The one feature-schema registry: every schema this release computes, and what it is for.

Each schema module declares a :class:`~metalearn.features.schema_spec.RegisteredSchema`
(``REGISTRATION``) next to its extractor; this module lists them. Everything that computes
features asks here, by schema id (``"pool@1"``) or by the
:class:`~metalearn.features.schema.FeatureSchema` a policy file records: PoolAL-v0, the
training episodes, :class:`~metalearn.policies.strategy.PolicyStrategy`, streaming and the baal
adapter. Adding a schema is one module (its features, extractor and ``REGISTRATION``) plus one
line in :data:`_BUILT_IN` below.
"""

from __future__ import annotations

from metalearn.exceptions import FeatureSchemaError, InvalidInputError
from metalearn.features import cluster_features, pool_features, proba_features, task_context_features
from metalearn.features.schema import FeatureSchema
from metalearn.features.schema_spec import TRAINERS, RegisteredSchema

__all__ = [
    "SCHEMAS",
    "register",
    "registered_schemas",
    "schema_entry",
    "get_schema",
    "trainable_schema",
    "trainable_names",
]

#: Registered schemas by id, in registration order.
_REGISTRY: dict[str, RegisteredSchema] = {}

#: Every schema this release can compute, by name, then version (derived from the registry; kept
#: for ``metalearn.features.SCHEMAS`` users).
SCHEMAS: dict[str, dict[int, FeatureSchema]] = {}


def register(entry: RegisteredSchema) -> RegisteredSchema:
    """Add a schema to the registry; returns ``entry``.

    Raises :class:`FeatureSchemaError` if its id or its trainer configuration name is taken.
    """
    if entry.id in _REGISTRY:
        raise FeatureSchemaError(f"feature schema {entry.id} is already registered")
    if any(other.config_name == entry.config_name for other in _REGISTRY.values()):
        raise FeatureSchemaError(f"trainer configuration name {entry.config_name!r} is already taken")
    _REGISTRY[entry.id] = entry
    SCHEMAS.setdefault(entry.schema.name, {})[entry.schema.version] = entry.schema
    return entry


def registered_schemas(
    *, trainer: str | None = None, pool_al: bool | None = None, streaming: bool | None = None
) -> tuple[RegisteredSchema, ...]:
    """The registered schemas, in registration order, optionally only those with the given uses.

    Parameters
    ----------
    trainer : str, optional
        Only the schemas this trainer (one of :data:`~metalearn.features.schema_spec.TRAINERS`) trains.
    pool_al, streaming : bool, optional
        Only the schemas PoolAL-v0 observes / streaming computes (or, with False, does not).
    """
    if trainer is not None and trainer not in TRAINERS:
        raise InvalidInputError(f"unknown trainer {trainer!r}; valid values: {', '.join(TRAINERS)}")
    return tuple(
        entry
        for entry in _REGISTRY.values()
        if (trainer is None or trainer in entry.trainers)
        and (pool_al is None or entry.pool_al == pool_al)
        and (streaming is None or entry.streaming == streaming)
    )


def schema_entry(key: str | FeatureSchema | RegisteredSchema) -> RegisteredSchema:
    """The registered schema of an id (``"pool@2"``) or of a :class:`FeatureSchema` (a policy's).

    A :class:`RegisteredSchema` is returned as registered (so callers may pass either).

    Raises
    ------
    FeatureSchemaError
        For an unknown id (the message lists the registered ones), or a ``FeatureSchema`` whose
        features differ from those registered under its id.
    """
    if isinstance(key, RegisteredSchema):
        key = key.schema
    schema_id = key.id if isinstance(key, FeatureSchema) else key
    entry = _REGISTRY.get(schema_id) if isinstance(schema_id, str) else None
    if entry is None:
        raise FeatureSchemaError(
            f"unknown feature schema {schema_id!r}; this release computes: {', '.join(_REGISTRY)}"
        )
    if isinstance(key, FeatureSchema) and key != entry.schema:
        raise FeatureSchemaError(
            f"feature schema {schema_id} lists other features than the one this release computes under that id"
        )
    return entry


def get_schema(name: str, version: int | None = None) -> FeatureSchema:
    """Look up a schema; ``version=None`` gives the newest. Raises :class:`FeatureSchemaError`."""
    if name not in SCHEMAS:
        raise FeatureSchemaError(f"unknown feature schema {name!r}; this release computes: {', '.join(SCHEMAS)}")
    versions = SCHEMAS[name]
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        newest = max(versions)
        hint = " (it was written by a newer metalearn: upgrade the package)" if version > newest else ""
        raise FeatureSchemaError(
            f"feature schema {name!r} version {version} cannot be computed by this release, which knows "
            f"version(s) {sorted(versions)}{hint}"
        )
    return versions[version]


def trainable_names(trainer: str) -> tuple[str, ...]:
    """The trainer configuration names (``"pool"``, ``"pool@2"``, ...) of the schemas ``trainer`` trains."""
    return tuple(entry.config_name for entry in registered_schemas(trainer=trainer))


def trainable_schema(name: object, trainer: str) -> RegisteredSchema:
    """The schema a trainer configuration names; raises :class:`FeatureSchemaError` if ``trainer`` cannot train it."""
    for entry in registered_schemas(trainer=trainer):
        if entry.config_name == name:
            return entry
    raise FeatureSchemaError(
        f"unknown feature schema {name!r} to train for; valid values: {', '.join(trainable_names(trainer))}"
    )


#: The schemas of this release, in the order ``metalearn features`` lists them.
_BUILT_IN: tuple[RegisteredSchema, ...] = (
    pool_features.REGISTRATION,
    cluster_features.REGISTRATION,
    task_context_features.REGISTRATION,
    proba_features.REGISTRATION,
)
for _entry in _BUILT_IN:
    register(_entry)
