"""Stream-based active learning as a Gymnasium environment: keep or skip each arriving record."""

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
from metalearn.features.schema import POOL_SCHEMA
from metalearn.simulation.process import ActiveLearningProcess
from metalearn.tasks.task import Task

if TYPE_CHECKING:
    from metalearn.tasks.suite import TaskSuite

__all__ = ["StreamALEnv", "STREAM_CONTEXT_FEATURES"]

#: Names of the two context values StreamAL appends after the ``pool`` schema's context.
STREAM_CONTEXT_FEATURES: tuple[str, ...] = ("stream_position", "budget_pace")


class StreamALEnv(gym.Env[dict[str, np.ndarray], np.int64]):
    """Stream-based active learning: decide, record by record, whether to buy its label.

    ## Description

    One episode is one simulated active-learning process on a task sampled from a task suite
    (or from a fixed list of tasks). The unlabeled pool records arrive one at a time, in an
    order drawn from ``self.np_random``; for each the agent decides to keep (label) or skip it,
    and a skipped record never comes back. Kept records form batches of the task's
    ``batch_size``: a complete batch is labeled by the oracle, a fresh task model is trained
    and scored on the test split, and the metadata history is updated.

    The candidate features are those of the ``pool`` schema, from a
    :class:`~metalearn.features.pool_features.PoolFeatureExtractor` updated at every retrain
    over the whole pool: the history window then means "the last H models' predictions on
    this record", which a streaming deployment can compute by keeping the last H models.

    ## Action Space

    ``Discrete(2)``: 0 skips the arriving record, 1 keeps it (adds it to the batch to label).
    ``True``/``False`` and integral floats are accepted; any other value (2, 0.5, NaN, a
    string...) raises :class:`~metalearn.exceptions.InvalidInputError`.

    ## Observation Space

    ``Dict`` with

    - ``candidate``: ``Box(-1, 1, (F,), float32)``, the arriving record's per-candidate
      features (F = ``POOL_SCHEMA.n_candidate_features``), as of the last retrain; zeros
      after the episode ends.
    - ``context``: ``Box(-1, 1, (G + 2,), float32)``, the ``pool`` schema's context features
      (G = ``POOL_SCHEMA.n_context_features``) followed by ``stream_position`` (fraction of
      the stream already seen, in [0, 1]) and ``budget_pace`` (labels left, counting kept
      records not yet labeled as spent, over records left in the stream including the
      arriving one, clipped to [0, 1]).

    ## Rewards

    0 on a step that does not complete a batch. When a batch is complete (the task's
    ``batch_size`` kept records, or fewer when they exhaust the budget):

    - ``reward="auc"``: the normalised area of the new learning-curve segment;
    - ``reward="improvement"``: the change of the test score since the previous retrain.

    When the stream ends before the budget is spent, a pending partial batch is labeled and
    scored like a complete one, and (for ``"auc"``) the unused budget is paid as the curve's
    flat extension, ``last score * labels left / label_budget``. So the ``auc`` return equals
    :func:`~metalearn.simulation.metrics.area_under_learning_curve`, and the ``improvement``
    return equals the final score minus the initial one. The score is test accuracy or
    macro-F1 (``metric``).

    ## Starting State

    A task is sampled with ``self.np_random``; the initial model is trained on the initial
    labeled set and scored, its predictions recorded, and the unlabeled records are shuffled
    into the stream; the first observation shows the first arriving record.

    ## Episode End

    ``terminated`` when the label budget is spent or the stream is exhausted; ``truncated``
    is always ``False`` (an episode has at most as many steps as unlabeled records). At the
    end, ``info["aulc"]`` holds the area under the learning curve for ``metric``.

    ``info`` always holds ``task`` (name), ``n_bought``, ``accuracy`` and ``macro_f1`` (latest
    test scores), ``record`` (pool index of the record just decided on, -1 at reset),
    ``kept`` (whether it was kept) and ``retrained`` (whether this step labeled a batch).

    ## Arguments

    - ``task_suite``: a ``TaskSuite``, a suite name or path for ``load_task_suite``, or
      ``None`` for ``default_task_suite()``.
    - ``tasks``: alternatively, a sequence of fixed :class:`~metalearn.tasks.task.Task` objects
      sampled uniformly (not together with ``task_suite``).
    - ``window``: H, the number of loops the metadata history keeps (default 5, at least 2).
    - ``reward``: ``"auc"`` (default) or ``"improvement"``.
    - ``metric``: ``"accuracy"`` (default) or ``"macro_f1"``.
    - ``render_mode``: ``None`` or ``"ansi"`` (a one-line text summary).

    ``reset(options={"task": task})`` runs one episode on a given task instead of a sampled one.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task_suite: TaskSuite | str | os.PathLike[str] | None = None,
        tasks: Sequence[Task] | None = None,
        window: int = 5,
        reward: str = "auc",
        metric: str = "accuracy",
        render_mode: str | None = None,
    ) -> None:
        self._suite, self._tasks = check_task_source(task_suite, tasks)
        self.window = check_positive_int(window, "window", minimum=2)
        self.reward_mode = check_choice(reward, "reward", REWARDS)
        self.metric = check_choice(metric, "metric", METRICS)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise InvalidInputError(
                f"unknown render_mode {render_mode!r}; valid values: None, {', '.join(self.metadata['render_modes'])}"
            )
        self.render_mode = render_mode

        n_context = POOL_SCHEMA.n_context_features + len(STREAM_CONTEXT_FEATURES)
        self.observation_space = spaces.Dict(  # type: ignore[assignment]  # gymnasium: Dict is Space[dict[str, Space]]
            {
                "candidate": spaces.Box(-1.0, 1.0, shape=(POOL_SCHEMA.n_candidate_features,), dtype=np.float32),
                "context": spaces.Box(-1.0, 1.0, shape=(n_context,), dtype=np.float32),
            }
        )
        self.action_space = spaces.Discrete(2)

        # Episode state, created by reset().
        self.task: Task | None = None
        self.process: ActiveLearningProcess | None = None
        self.extractor: PoolFeatureExtractor | None = None
        self._order = np.zeros(0, dtype=np.int64)  # pool indices in arrival order
        self._position = 0  # index into _order of the arriving record
        self._pending: list[int] = []  # kept records awaiting a complete batch
        self._pool_context = np.zeros(POOL_SCHEMA.n_context_features, dtype=np.float32)
        self._finished = True

    # -- Gymnasium API --------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        task = sample_task(self.np_random, self._suite, self._tasks, options)
        self.task = task
        self.process, self.extractor = start_process(task, self.window, self.np_random)
        self._pool_context = self.extractor.context_features()
        # The initial labeled set is the seed set, not part of the stream.
        self._order = self.np_random.permutation(self.process.unlabeled_indices).astype(np.int64)
        self._position = 0
        self._pending = []
        self._finished = False
        return self._observation(), self._info(record=-1, kept=False, retrained=False)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        if self.process is None or self.extractor is None or self.task is None:
            raise InvalidInputError("call reset() before step()")
        if self._finished:
            raise InvalidInputError("the episode is over: call reset() to start a new one")
        keep = self._check_action(action)
        record = int(self._order[self._position])
        self._position += 1
        if keep:
            self._pending.append(record)

        reward = 0.0
        retrained = False
        # Kept records are committed budget, so a batch closes early when they use it all up.
        if self._pending and len(self._pending) >= min(self.task.batch_size, self.process.budget_left):
            reward += self._retrain()
            retrained = True
        terminated = self.process.budget_left <= 0
        if not terminated and self._position >= self._order.size:
            # Stream exhausted: label what was kept, then pay the unused budget as flat curve.
            if self._pending:
                reward += self._retrain()
                retrained = True
            reward += tail_reward(self.process, self.reward_mode, self.metric)
            terminated = True
        info = self._info(record=record, kept=keep, retrained=retrained)
        if terminated:
            self._finished = True
            info["aulc"] = process_aulc(self.process, self.metric)
        return self._observation(), reward, terminated, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self.process is None or self.task is None:
            return "StreamAL: not started (call reset())"
        scores = curve_scores(self.process, self.metric)
        return (
            f"StreamAL {self.task.name}: record {self._position}/{self._order.size}, "
            f"bought {self.process.bought}/{self.task.label_budget} labels ({len(self._pending)} pending), "
            f"{self.metric} {scores[-1]:.4f}"
        )

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _check_action(action: Any) -> bool:
        return check_discrete_action(action, 2, "0 (skip) or 1 (keep)") == 1

    def _retrain(self) -> float:
        """LABEL the kept records, TRAIN a fresh model, score it, INFER on the pool; return the reward."""
        assert self.process is not None and self.extractor is not None
        self.process.label(np.asarray(self._pending, dtype=np.int64))
        self._pending = []
        self.process.fit()
        self.process.evaluate()
        update_extractor(self.extractor, self.process)
        self._pool_context = self.extractor.context_features()
        return loop_reward(self.process, self.reward_mode, self.metric)

    def _observation(self) -> dict[str, np.ndarray]:
        assert self.process is not None and self.extractor is not None
        n_stream = max(int(self._order.size), 1)
        if self._finished or self._position >= self._order.size:
            candidate = np.zeros(POOL_SCHEMA.n_candidate_features, dtype=np.float32)
            records_left = 0
        else:
            record = self._order[self._position : self._position + 1]
            candidate = self.extractor.candidate_features(record)[0]
            records_left = int(self._order.size - self._position)
        labels_left = max(self.process.budget_left - len(self._pending), 0)
        pace = min(labels_left / records_left, 1.0) if records_left > 0 else 0.0
        context = np.concatenate(
            [self._pool_context, np.asarray([self._position / n_stream, pace], dtype=np.float32)]
        )
        # Features are defined in [-1, 1]; clipping only guards against float rounding.
        return {
            "candidate": np.clip(candidate, -1.0, 1.0).astype(np.float32),
            "context": np.clip(context, -1.0, 1.0).astype(np.float32),
        }

    def _info(self, *, record: int, kept: bool, retrained: bool) -> dict[str, Any]:
        assert self.process is not None and self.task is not None
        return {
            "task": self.task.name,
            "n_bought": self.process.bought,
            "accuracy": self.process.accuracy[-1],
            "macro_f1": self.process.macro_f1[-1],
            "record": record,
            "kept": kept,
            "retrained": retrained,
        }
