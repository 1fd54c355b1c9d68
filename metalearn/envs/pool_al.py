"""Pool-based active learning as a Gymnasium environment: pick records for the next batch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metalearn.common.validation import check_positive_int
from metalearn.envs.common import (
    METRICS,
    REWARDS,
    check_choice,
    check_discrete_action,
    check_task_source,
    curve_scores,
    loop_reward,
    process_aulc,
    sample_task,
    start_process,
    tail_reward,
    update_extractor,
)
from metalearn.exceptions import InvalidInputError
from metalearn.features.pool_features import PoolFeatureExtractor
from metalearn.features.registry import registered_schemas, schema_entry
from metalearn.features.schema import POOL_SCHEMA, FeatureSchema
from metalearn.simulation.process import ActiveLearningProcess
from metalearn.tasks.task import Task

if TYPE_CHECKING:  # the suite module is only needed when no fixed tasks are given
    from metalearn.tasks.suite import TaskSuite

__all__ = ["PoolALEnv", "REWARDS", "METRICS", "CANDIDATE_SELECTIONS", "FEATURE_SCHEMAS"]

#: How the K candidate slots are filled from the unlabeled pool.
CANDIDATE_SELECTIONS: tuple[str, ...] = ("mixed", "random")
#: The feature schemas the environment observes, by id (those the registry marks ``pool_al``).
FEATURE_SCHEMAS: dict[str, FeatureSchema] = {entry.id: entry.schema for entry in registered_schemas(pool_al=True)}


class PoolALEnv(gym.Env[dict[str, np.ndarray], np.int64]):
    """Pool-based active learning: choose, record by record, which candidates to label.

    ## Description

    One episode is one simulated active-learning process on a task sampled from a task suite
    (or from a fixed list of tasks). The agent fills each query batch one pick at a time from
    ``n_candidates`` (K) candidate slots pre-selected from the unlabeled pool. When the batch
    is complete the records are labeled by the oracle, a fresh task model is trained on all
    labeled records and scored on the held-out test split, the multi-loop metadata history
    is updated with the model's predictions on the pool, and new candidates are selected.

    Candidate pre-selection (``candidate_selection``):

    - ``"mixed"``: ceil(K/2) unlabeled records with the smallest current margin (ties broken
      at random) plus records drawn uniformly from the remaining unlabeled ones, or the
      schema's own rule (:meth:`~metalearn.features.schema_spec.RegisteredSchema.preselect`;
      with the ``pool@2`` features a third smallest-margin, a third representative, the most
      typical record of each cluster without a label, and the rest random), as a policy of that
      schema is queried;
    - ``"random"``: K records drawn uniformly from the unlabeled pool.

    The K slots are then shuffled, so a slot's position carries no information. If a batch
    needs more picks than there are valid slots left (``batch_size`` > K), a fresh candidate
    set is drawn from the unlabeled, not yet picked records, without retraining.

    ## Action Space

    ``Discrete(K)``: the slot whose record is added to the current batch. Use
    :meth:`action_masks` (as sb3-contrib's ``MaskablePPO`` does) to know the valid slots. An
    action on a masked slot (padding, or already picked in this batch) is replaced by the
    lowest-index valid slot and ``info["invalid_action"]`` is ``True``; this keeps random
    agents and environment checkers working and every episode finite. An action outside
    ``[0, K)``, or one that is not an integer (a fraction, NaN, a string...), raises
    :class:`~metalearn.exceptions.InvalidInputError`; integral floats such as ``1.0`` are accepted.

    ## Observation Space

    ``Dict`` with

    - ``candidates``: ``Box(-1, 1, (K, F), float32)``, the feature schema's per-candidate
      features (F = ``schema.n_candidate_features``; ``pool@1`` by default) of each slot. A
      slot picked in the current batch keeps its features (so a policy can see what the batch
      holds) but is masked; padding slots are zeros. With ``pool@2`` the within-batch columns
      (``cluster_unlabeled``, ``distance_to_selected``) of the other slots are updated after
      every pick, as :class:`~metalearn.policies.strategy.PolicyStrategy` fills a batch (a
      batch-aware schema's :meth:`~metalearn.features.schema_spec.RegisteredSchema.note_pick`).
    - ``context``: ``Box(-1, 1, (G,), float32)``, the per-loop context features
      (G = ``schema.n_context_features``), as of the last retrain.
    - ``mask``: ``MultiBinary(K)``, 1 where the slot holds an unlabeled record not yet picked.
      With fewer than K unlabeled records the extra slots are padding (zeros, mask 0).

    ## Rewards

    0 on a pick that only adds to the batch. On a pick that completes a batch (the task's
    ``batch_size`` picks, or fewer when the budget or the pool runs out):

    - ``reward="auc"``: the normalised area of the new learning-curve segment
      (:meth:`ActiveLearningProcess.last_segment_area`), so the episode return equals
      :func:`~metalearn.simulation.metrics.area_under_learning_curve` of the curve (if the pool
      is exhausted before the budget, the last step also pays the curve's flat extension);
    - ``reward="improvement"``: the change of the test score since the previous retrain, so
      the return equals the final score minus the initial score.

    The score is test accuracy or macro-F1 (``metric``).

    ## Starting State

    A task is sampled with ``self.np_random``; its initial labeled set is labeled, the initial
    model trained and scored (the first point of the learning curve), its predictions recorded
    in the history, and the first K candidates selected.

    ## Episode End

    ``terminated`` when the label budget is spent or the pool has no unlabeled record left;
    ``truncated`` is always ``False`` (an episode has at most ``label_budget`` steps). At the
    end, ``info["aulc"]`` holds the area under the learning curve for ``metric``.

    ``info`` always holds ``task`` (name), ``n_bought``, ``accuracy`` and ``macro_f1`` (latest
    test scores), ``invalid_action``, ``record`` (pool index picked, -1 at reset) and
    ``retrained`` (whether this step completed a batch).

    ## Arguments

    - ``task_suite``: a ``TaskSuite``, a suite name or path for ``load_task_suite``, or
      ``None`` for ``default_task_suite()``.
    - ``tasks``: alternatively, a sequence of fixed :class:`~metalearn.tasks.task.Task` objects
      sampled uniformly (not together with ``task_suite``).
    - ``n_candidates``: K, the number of candidate slots (default 32).
    - ``window``: H, the number of loops the metadata history keeps (default 5, at least 2).
    - ``reward``: ``"auc"`` (default) or ``"improvement"``.
    - ``metric``: ``"accuracy"`` (default) or ``"macro_f1"``.
    - ``candidate_selection``: ``"mixed"`` (default) or ``"random"``.
    - ``feature_schema``: ``"pool@1"`` (default), ``"pool@2"`` (plus cluster coverage,
      typicality and within-batch features), or any schema the registry marks ``pool_al``
      (:data:`FEATURE_SCHEMAS`).
    - ``render_mode``: ``None`` or ``"ansi"`` (a one-line text summary).

    ``reset(options={"task": task})`` runs one episode on a given task instead of a sampled one.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task_suite: TaskSuite | str | os.PathLike[str] | None = None,
        tasks: Sequence[Task] | None = None,
        n_candidates: int = 32,
        window: int = 5,
        reward: str = "auc",
        metric: str = "accuracy",
        candidate_selection: str = "mixed",
        render_mode: str | None = None,
        feature_schema: str = POOL_SCHEMA.id,
    ) -> None:
        self._suite, self._tasks = check_task_source(task_suite, tasks)
        self.n_candidates = check_positive_int(n_candidates, "n_candidates")
        self.window = check_positive_int(window, "window", minimum=2)
        self.reward_mode = check_choice(reward, "reward", REWARDS)
        self.metric = check_choice(metric, "metric", METRICS)
        self.candidate_selection = check_choice(candidate_selection, "candidate_selection", CANDIDATE_SELECTIONS)
        self.schema = FEATURE_SCHEMAS[check_choice(feature_schema, "feature_schema", tuple(FEATURE_SCHEMAS))]
        self.registered_schema = schema_entry(self.schema)  # its extractor, pre-selection and pick updates
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise InvalidInputError(
                f"unknown render_mode {render_mode!r}; valid values: None, {', '.join(self.metadata['render_modes'])}"
            )
        self.render_mode = render_mode

        k = self.n_candidates
        n_features = self.schema.n_candidate_features
        self.observation_space = spaces.Dict(  # type: ignore[assignment]  # gymnasium: Dict is Space[dict[str, Space]]
            {
                "candidates": spaces.Box(-1.0, 1.0, shape=(k, n_features), dtype=np.float32),
                "context": spaces.Box(-1.0, 1.0, shape=(self.schema.n_context_features,), dtype=np.float32),
                "mask": spaces.MultiBinary(k),
            }
        )
        self.action_space = spaces.Discrete(k)

        # Episode state, created by reset().
        self.task: Task | None = None
        self.process: ActiveLearningProcess | None = None
        self.extractor: PoolFeatureExtractor | None = None
        self._slots = np.full(k, -1, dtype=np.int64)  # pool index per slot, -1 = padding
        self._mask = np.zeros(k, dtype=bool)
        self._features = np.zeros((k, n_features), dtype=np.float32)
        self._context = np.zeros(self.schema.n_context_features, dtype=np.float32)
        self._feature_slots = np.zeros(0, dtype=np.int64)  # slots given to candidate_features, in its row order
        self._batch: list[int] = []
        self._in_batch = np.zeros(0, dtype=bool)  # pool records picked into the pending batch
        self._target = 0  # picks that complete the pending batch
        self._finished = True

    # -- Gymnasium API --------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        task = sample_task(self.np_random, self._suite, self._tasks, options)
        self.task = task
        self.process, self.extractor = start_process(task, self.window, self.np_random, self.registered_schema)
        self._context = self._clip(self.extractor.context_features())
        self._batch = []
        self._in_batch = np.zeros(task.n_pool, dtype=bool)
        self._target = self._batch_target()
        self._finished = False
        self._select_candidates()
        return self._observation(), self._info(record=-1, invalid=False, retrained=False)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        if self.process is None or self.extractor is None or self.task is None:
            raise InvalidInputError("call reset() before step()")
        if self._finished:
            raise InvalidInputError("the episode is over: call reset() to start a new one")
        slot = self._check_action(action)
        invalid = not bool(self._mask[slot])
        if invalid:
            # Documented fallback: the lowest-index valid slot. One exists: the batch is not
            # complete, and _select_candidates refills the slots whenever they are used up.
            slot = int(np.flatnonzero(self._mask)[0])
        record = int(self._slots[slot])
        self._batch.append(record)
        self._in_batch[record] = True
        self._mask[slot] = False
        if self.registered_schema.batch_aware:
            self._note_pick(slot)

        reward = 0.0
        retrained = False
        terminated = False
        if len(self._batch) >= self._target:
            retrained = True
            reward = self._retrain()
            if self.process.done:
                terminated = True
                reward += tail_reward(self.process, self.reward_mode, self.metric)
                self._finished = True
                self._mask[:] = False
            else:
                self._target = self._batch_target()
                self._select_candidates()
        elif not self._mask.any():
            # batch_size > K: every slot is picked but the batch still needs records.
            self._select_candidates()

        info = self._info(record=record, invalid=invalid, retrained=retrained)
        if terminated:
            info["aulc"] = process_aulc(self.process, self.metric)
        return self._observation(), reward, terminated, False, info

    def action_masks(self) -> np.ndarray:
        """Valid actions, shape (K,), bool: slots holding an unlabeled record not yet picked."""
        return self._mask.copy()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self.process is None or self.task is None:
            return "PoolAL: not started (call reset())"
        scores = curve_scores(self.process, self.metric)
        return (
            f"PoolAL {self.task.name}: bought {self.process.bought}/{self.task.label_budget} labels, "
            f"batch {len(self._batch)}/{self._target}, {self.metric} {scores[-1]:.4f}"
        )

    # -- internals ----------------------------------------------------------------------------
    def _check_action(self, action: Any) -> int:
        return check_discrete_action(action, self.n_candidates, f"an integer slot in [0, {self.n_candidates})")

    def _batch_target(self) -> int:
        assert self.process is not None and self.task is not None
        return min(self.task.batch_size, self.process.budget_left, int((~self.process.labeled).sum()))

    def _retrain(self) -> float:
        """LABEL the batch, TRAIN a fresh model, score it, INFER on the pool; return the reward."""
        assert self.process is not None and self.extractor is not None
        self.process.label(np.asarray(self._batch, dtype=np.int64))
        self._in_batch[self._batch] = False
        self._batch = []
        self.process.fit()
        self.process.evaluate()
        update_extractor(self.extractor, self.process)
        self._context = self._clip(self.extractor.context_features())
        return loop_reward(self.process, self.reward_mode, self.metric)

    def _select_candidates(self) -> None:
        """Fill the K slots from the unlabeled records not in the pending batch."""
        assert self.process is not None and self.extractor is not None and self.extractor.history is not None
        rng = self.np_random
        k = self.n_candidates
        available = np.flatnonzero(~self.process.labeled & ~self._in_batch)
        if available.size <= k:
            chosen = available
        elif self.candidate_selection == "random":
            chosen = rng.choice(available, size=k, replace=False)
        else:
            history = self.extractor.history
            margin = history.latest(history.margin)[available]
            chosen = self.registered_schema.preselect(self.extractor, available, margin, k, rng)
        slots = np.full(k, -1, dtype=np.int64)
        slots[: chosen.size] = chosen
        # Shuffle all K slots so neither the selection rule nor padding sits at fixed positions.
        self._slots = slots[rng.permutation(k)]
        self._mask = self._slots >= 0
        self._features = np.zeros((k, self.schema.n_candidate_features), dtype=np.float32)
        self._feature_slots = np.flatnonzero(self._mask)
        if chosen.size:
            self._features[self._mask] = self._clip(self.extractor.candidate_features(self._slots[self._mask]))

    def _note_pick(self, slot: int) -> None:
        """Batch-aware schemas: update the other slots' within-batch features after ``slot`` was picked."""
        rows = self._features[self._feature_slots]  # aligned with the extractor's candidates
        self.registered_schema.note_pick(self.extractor, rows, int(np.searchsorted(self._feature_slots, slot)))
        self._features[self._feature_slots] = self._clip(rows)

    @staticmethod
    def _clip(values: np.ndarray) -> np.ndarray:
        # Features are defined in [-1, 1]; clipping only guards against float rounding so
        # observations always lie inside the declared Box.
        return np.clip(values, -1.0, 1.0).astype(np.float32)

    def _observation(self) -> dict[str, np.ndarray]:
        return {
            "candidates": self._features.copy(),
            "context": self._context.copy(),
            "mask": self._mask.astype(np.int8),
        }

    def _info(self, *, record: int, invalid: bool, retrained: bool) -> dict[str, Any]:
        assert self.process is not None and self.task is not None
        return {
            "task": self.task.name,
            "n_bought": self.process.bought,
            "accuracy": self.process.accuracy[-1],
            "macro_f1": self.process.macro_f1[-1],
            "invalid_action": invalid,
            "record": record,
            "retrained": retrained,
        }
