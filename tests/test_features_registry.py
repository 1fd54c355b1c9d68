"""The one feature-schema registry: lookups, and the same features everywhere a schema is computed.

For every registered schema, PoolAL-v0 (if it observes the schema), the training episodes (the
``collect_episode`` path) and the deployed :class:`~metalearn.policies.strategy.PolicyStrategy`
must see identical features for the same loop: same task, labeled set, model and seed, and,
for a batch-aware schema (pool@2), the same features again after a pick of the batch. A new
schema is tested here by registering it.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from sklearn.datasets import make_classification

import metalearn  # noqa: F401  (registers the environments)
from metalearn.envs.common import fitted_process
from metalearn.envs.pool_al import FEATURE_SCHEMAS
from metalearn.exceptions import FeatureSchemaError, InvalidInputError
from metalearn.features import SCHEMAS, get_schema
from metalearn.features.registry import register, registered_schemas, schema_entry, trainable_schema
from metalearn.features.schema import FeatureSchema
from metalearn.policies.architecture import ScorerArchitecture, parameter_shapes
from metalearn.policies.file import PolicyFile, save_policy
from metalearn.policies.numpy_scorer import NumpyScorer
from metalearn.policies.strategy import PolicyStrategy
from metalearn.policies.trainers.episodes import PROBA_HIDE_LABELED, TRAINABLE_SCHEMAS, EpisodeSpec, collect_episode, episode_seed
from metalearn.streaming.scorers import PolicyScorer
from metalearn.tasks.task import make_task

ENTRIES = registered_schemas()
SEED = 7


# ------------------------------------------------------------------------------------ setup
def _task():
    # A small pool, so every unlabeled record is a candidate (no pre-selection sampling) and
    # the oracle of the episode stays cheap.
    X, y = make_classification(n_samples=80, n_features=5, n_informative=3, n_classes=3, random_state=2)
    return make_task(X, y, name="registry", model="logreg", regime="cold", label_budget=6, batch_size=3, seed=0)


def _random_params(arch: ScorerArchitecture, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights of a deep-sets scorer (unit normalisation), numpy only."""
    rng = np.random.default_rng(seed)
    params = {name: rng.normal(0.0, 0.5, shape).astype(np.float32) for name, shape in parameter_shapes(arch).items()}
    for name in ("cand_mean", "ctx_mean"):
        params[name] = np.zeros_like(params[name])
    for name in ("cand_std", "ctx_std"):
        params[name] = np.ones_like(params[name])
    return params


class _Recorder:
    """Records every ``NumpyScorer.scores`` call: (features, context, scores), copied."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        original = NumpyScorer.scores

        def scores(scorer, candidates, context, mask=None):  # noqa: ANN001
            out = original(scorer, candidates, context, mask)
            self.calls.append((np.array(candidates, copy=True), np.array(context, copy=True), np.array(out, copy=True)))
            return out

        monkeypatch.setattr(NumpyScorer, "scores", scores)

    def take(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        calls, self.calls = self.calls, []
        return calls


def _episode_stream(key: tuple[int, ...]) -> np.random.SeedSequence:
    """The seed of the episode's own stream (collect_episode's second spawn)."""
    return episode_seed(SEED, *key).spawn(3)[1]


def _key_for(entry) -> tuple[int, ...]:
    """An episode key whose proba episode reveals the labeled count, as PolicyStrategy does."""
    for i in range(50):
        if not entry.probabilities_only or np.random.default_rng(_episode_stream((0, i))).random() >= PROBA_HIDE_LABELED:
            return (0, i)
    raise AssertionError("no key reveals the labeled count")  # pragma: no cover


def _rows(features: np.ndarray) -> np.ndarray:
    """The rows in a canonical order (a multiset of records, whatever the slot order)."""
    features = np.asarray(features, dtype=np.float64)
    return features[np.lexsort(features.T[::-1])]


def _same_records(a: np.ndarray, b: np.ndarray, exact_margin: int | None) -> None:
    """Identical features.

    With ``exact_margin`` (a schema whose deployed features are float64, margin recomputed
    exactly): the other columns are identical once stored in float32, as training stores them
    (the within-batch columns are updated in float64 there), and the margin column agrees to
    float32 rounding.
    """
    assert np.shape(a) == np.shape(b)
    if exact_margin is None:
        np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
        return
    a32, b32 = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    others = np.arange(a32.shape[1]) != exact_margin
    np.testing.assert_array_equal(a32[:, others], b32[:, others])
    np.testing.assert_allclose(a32[:, exact_margin], b32[:, exact_margin], rtol=0, atol=1e-6)


# ------------------------------------------------------------- one schema, the same features
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_environment_episodes_and_strategy_see_identical_features(entry, monkeypatch):
    schema = entry.schema
    task = _task()
    K = task.n_pool + 8  # every unlabeled record is a candidate; some slots are padding
    key = _key_for(entry)
    arch = ScorerArchitecture.for_schema(schema, hidden=8)
    params = _random_params(arch)
    recorder = _Recorder(monkeypatch)
    exact_margin = schema.candidate_features.index("margin") if entry.exact_margins else None

    # -- the deployed strategy, on the first loop of the task, with the episode's stream
    process = fitted_process(task)
    y = np.full(task.n_pool, np.nan)
    y[process.labeled] = task.y_pool[process.labeled]
    policy = PolicyFile(arch=arch, params=params, metadata={"feature_schema": schema.to_dict(), "window": 3})
    strategy = PolicyStrategy(
        policy, n_candidates=K, label_budget=task.label_budget, random_state=np.random.default_rng(_episode_stream(key))
    )
    picks = strategy.query(task.X_pool, y, process.model, batch_size=task.batch_size, step_scores=True)
    unlabeled = np.flatnonzero(~process.labeled)
    calls = recorder.take()[-task.batch_size :]  # the scores before each pick (step_scores)
    strategy_steps = [features for features, _, _ in calls]
    strategy_context = calls[0][1]
    assert strategy_steps[0].shape == (unlabeled.size, schema.n_candidate_features)
    if not entry.batch_aware:
        np.testing.assert_array_equal(strategy_steps[1], strategy_steps[0])  # picks do not change features

    # -- the training episodes (collect_episode), the current policy choosing every batch
    if entry.trainers & {"imitation", "lal"}:
        spec = EpisodeSpec(
            suite=None, seed=SEED, key=key, n_candidates=K, window=3, beta=0.0, task=task,
            schema=entry.config_name, arch=arch.to_dict(), params=params,
        )
        episode = collect_episode(spec)
        episode_calls = recorder.take()
        assert episode.mask[0].sum() == unlabeled.size
        _same_records(_rows(episode.candidates[0][episode.mask[0]]), _rows(strategy_steps[0]), exact_margin)
        np.testing.assert_array_equal(episode.context[0], strategy_context)
        if entry.batch_aware:
            # Its second scoring of the first loop comes after its first pick, as in the strategy.
            _same_records(_rows(episode_calls[1][0]), _rows(strategy_steps[1]), exact_margin)

    # -- PoolAL-v0, reset on the same task with the same stream, then the strategy's first pick
    if entry.pool_al:
        env = gym.make("metalearn/PoolAL-v0", tasks=[task], n_candidates=K, window=3, feature_schema=entry.id)
        env.unwrapped.np_random = np.random.default_rng(_episode_stream(key))
        obs, _ = env.reset(options={"task": task})
        slots = env.unwrapped._slots
        valid = slots >= 0
        order = np.argsort(slots[valid])  # slots of the unlabeled records in pool order
        assert np.array_equal(slots[valid][order], unlabeled)
        _same_records(obs["candidates"][valid][order], strategy_steps[0], exact_margin)
        np.testing.assert_array_equal(obs["context"], strategy_context)
        first = int(np.flatnonzero(slots == picks[0])[0])
        obs, *_ = env.step(first)
        assert obs["mask"][first] == 0
        _same_records(obs["candidates"][valid][order], strategy_steps[1], exact_margin)
        env.close()


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.batch_aware], ids=lambda e: e.id)
def test_batch_aware_features_change_after_a_pick(entry, monkeypatch):
    # The comparison above after a pick means something only if a pick changes the features.
    recorder = _Recorder(monkeypatch)
    task = _task()
    schema = entry.schema
    arch = ScorerArchitecture.for_schema(schema, hidden=8)
    process = fitted_process(task)
    y = np.full(task.n_pool, np.nan)
    y[process.labeled] = task.y_pool[process.labeled]
    policy = PolicyFile(arch=arch, params=_random_params(arch), metadata={"feature_schema": schema.to_dict(), "window": 3})
    PolicyStrategy(policy, n_candidates=200, random_state=0).query(task.X_pool, y, process.model, batch_size=3)
    first, second = recorder.take()[:2]
    column = schema.candidate_features.index("distance_to_selected")
    assert np.any(second[0][:, column] < first[0][:, column])


# ------------------------------------------------------------------------------- the registry
def test_every_registered_schema_is_found_by_id_and_by_its_feature_schema():
    ids = [e.id for e in ENTRIES]
    assert len(set(ids)) == len(ids) and {"pool@1", "pool@2", "proba@1"} <= set(ids)
    for entry in ENTRIES:
        assert schema_entry(entry.id) is entry
        assert schema_entry(entry.schema) is entry
        recorded = entry.schema.to_dict()  # as a policy file records it, without descriptions
        copy = FeatureSchema(
            str(recorded["name"]), int(recorded["version"]),  # type: ignore[call-overload]
            tuple(recorded["candidate_features"]), tuple(recorded["context_features"]),  # type: ignore[arg-type]
        )
        assert schema_entry(copy) is entry
        assert get_schema(entry.schema.name, entry.schema.version) is entry.schema
        assert entry.extractor_class.schema is entry.schema  # the extractor computes this schema


def test_unknown_schema_id_lists_the_registered_ones():
    with pytest.raises(FeatureSchemaError) as info:
        schema_entry("pool@9")
    for entry in ENTRIES:
        assert entry.id in str(info.value)
    with pytest.raises(InvalidInputError, match="pool@1"):  # FeatureSchemaError is an InvalidInputError
        schema_entry("stream@1")


def test_a_schema_with_a_registered_id_but_other_features_is_refused():
    pool1 = schema_entry("pool@1").schema
    other = FeatureSchema("pool", 1, tuple(reversed(pool1.candidate_features)), pool1.context_features)
    with pytest.raises(FeatureSchemaError, match="other features"):
        schema_entry(other)


def test_version_lookup_gives_the_newest_by_default():
    for name, versions in SCHEMAS.items():
        assert get_schema(name) is versions[max(versions)]
        assert set(versions) == {e.schema.version for e in ENTRIES if e.schema.name == name}
    assert get_schema("proba").id == "proba@1" and get_schema("pool").version >= 2
    with pytest.raises(FeatureSchemaError, match="newer metalearn"):
        get_schema("pool", 99)
    with pytest.raises(FeatureSchemaError, match="pool, proba"):
        get_schema("stream")


def test_a_policy_of_an_unknown_schema_is_refused(tmp_path):
    pool1 = schema_entry("pool@1").schema
    arch = ScorerArchitecture.for_schema(pool1, hidden=4)
    unknown = dict(pool1.to_dict(), version=9)
    with pytest.raises(FeatureSchemaError, match="version 9"):
        PolicyFile(arch=arch, params=_random_params(arch), metadata={"feature_schema": unknown, "window": 3})
    with pytest.raises(FeatureSchemaError, match="unknown feature schema 'stream'"):
        save_policy(tmp_path / "p.safetensors", arch, _random_params(arch), {"feature_schema": dict(unknown, name="stream"), "window": 3})
    assert not (tmp_path / "p.safetensors").exists()


def test_registering_a_taken_id_or_config_name_is_refused():
    pool2 = schema_entry("pool@2")
    with pytest.raises(FeatureSchemaError, match="already registered"):
        register(pool2)
    assert registered_schemas() == ENTRIES  # unchanged


def test_uses_come_from_the_registry():
    assert FEATURE_SCHEMAS == {e.id: e.schema for e in ENTRIES if e.pool_al}
    assert {"pool@1", "pool@2"} <= set(FEATURE_SCHEMAS) and "proba@1" not in FEATURE_SCHEMAS
    assert TRAINABLE_SCHEMAS == tuple(e.config_name for e in ENTRIES if "imitation" in e.trainers)
    assert {"pool", "pool@2", "proba"} <= set(TRAINABLE_SCHEMAS)
    assert trainable_schema("pool", "imitation").id == "pool@1"  # earlier runs resume on pool@1
    assert trainable_schema("pool@2", "es").id == "pool@2"
    with pytest.raises(FeatureSchemaError, match="valid values: pool, pool@2"):
        trainable_schema("proba", "ppo")
    assert "proba@1" in [e.id for e in ENTRIES if e.probabilities_only]


def test_environment_and_streaming_refuse_schemas_they_cannot_compute():
    with pytest.raises(InvalidInputError, match="pool@1, pool@2"):
        gym.make("metalearn/PoolAL-v0", tasks=[_task()], feature_schema="proba@1")
    proba = schema_entry("proba@1").schema
    arch = ScorerArchitecture.for_schema(proba, hidden=4)
    policy = PolicyFile(arch=arch, params=_random_params(arch), metadata={"feature_schema": proba.to_dict(), "window": 3})
    with pytest.raises(FeatureSchemaError, match="streaming computes pool@1, pool@2"):
        PolicyScorer(policy, label_budget=10)


def test_ppo_schemas_alias_the_registry():
    pytest.importorskip("sb3_contrib")
    from metalearn.policies.trainers.ppo import PPO_SCHEMAS

    assert PPO_SCHEMAS == {e.config_name: e.schema for e in registered_schemas(trainer="ppo")}
    assert list(PPO_SCHEMAS)[:2] == ["pool", "pool@2"]
