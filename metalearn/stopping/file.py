"""The stopping-rule file: the same safe kind as a policy file (safetensors + JSON model card).

A :mod:`~metalearn.common.container` file of kind :data:`STOPPING_RULE_KIND` (the container
checks the bytes, the header, the format and the version, and writes atomically): 8 bytes of
header length, the JSON header (one entry per tensor and ``__metadata__ = {"metalearn":
"<JSON>"}``), then float32 tensors. No pickle, nothing executable.

The metadata JSON holds ``format`` (``"metalearn-stopping-rule"``), ``format_version``,
``architecture`` (:class:`~metalearn.stopping.model.GainModelArchitecture`), ``feature_set``
(:data:`~metalearn.stopping.features.STOPPING_FEATURE_SET`; refused if this release computes
other features), ``window`` (history loops), ``horizon`` (labels the gain is measured over),
``threshold`` (the recommended setting of the knob, accuracy points), ``patience`` (calls in a
row below it, default 1), ``decision`` (the gain statistic compared with the threshold:
``"mean"`` or a quantile such as ``"q0.9"``, default ``"mean"``), ``quantile_shifts``
(optional: one number of accuracy points per quantile level, added to the regressor's quantiles
to calibrate them, e.g. by split-conformal adjustment on held-in runs; a file without it uses
the regressor's quantiles as they are), ``quantile_shifts_by_family`` (optional: such shifts per
model family of :mod:`~metalearn.stopping.model_family`, e.g. ``{"forest": [...]}``, used in
place of ``quantile_shifts`` when the loop's classifier is of that family), ``package_version`` and ``created``; the trainer adds ``task_suite``, ``trainer``, ``seed``, ``training`` and
``validation`` (the model card).

Released rules live in a ``stopping/`` folder of each folder where named policies are found
(:func:`~metalearn.policies.names.policy_search_dirs`): the released ones in
the repository's ``policies/stopping/`` (package data of :mod:`metalearn.policies.released`, in a checkout and a wheel alike),
resolved by the policies' resolver (:func:`~metalearn.policies.names.resolve_named_file`); the
card uses the policy card's renderings (:mod:`metalearn.policies.card`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.container import FileKind
from metalearn.common.model_file import read_model_file, save_model_file
from metalearn.common.text import printable
from metalearn.exceptions import InvalidInputError, MetalearnError, StoppingRuleFileError
from metalearn.policies.card import short_value
from metalearn.policies.names import POLICY_SUFFIX, names_in_folders, policy_search_dirs, resolve_named_file
from metalearn.stopping.features import STOPPING_FEATURE_SET
from metalearn.stopping.model import GainModelArchitecture, NumpyGainModel
from metalearn.stopping.model_family import MODEL_FAMILIES

__all__ = [
    "StoppingRuleFile",
    "save_stopping_rule",
    "read_stopping_rule",
    "resolve_stopping_rule_path",
    "released_stopping_rule_names",
    "stopping_rule_search_dirs",
    "format_stopping_card",
    "calibrated_quantiles",
    "STOPPING_RULE_KIND",
    "FORMAT",
    "FORMAT_VERSION",
]

FORMAT = "metalearn-stopping-rule"
FORMAT_VERSION = 1
#: The stopping-rule file's kind in the container (the policy file's limits).
STOPPING_RULE_KIND = FileKind(
    format=FORMAT,
    version=FORMAT_VERSION,
    label="stopping-rule file",
    noun="metalearn stopping rule",
    version_label="stopping-rule format",
    error=StoppingRuleFileError,
    expected="a .safetensors stopping-rule file",
)
_SUBFOLDER = "stopping"
_REQUIRED = ("architecture", "feature_set", "window", "horizon", "threshold")
_STANDARD = ("format", "format_version", "package_version", "created")


@dataclass(eq=False)
class StoppingRuleFile:
    """A learned stopping rule read from (or about to be written to) a file.

    Attributes
    ----------
    arch : GainModelArchitecture
    params : dict of str to ndarray (float32)
    metadata : dict
        The model card (standard keys plus what the trainer recorded).
    path : Path or None
    model : NumpyGainModel
    """

    arch: GainModelArchitecture
    params: dict[str, np.ndarray]
    metadata: dict[str, Any]
    path: Path | None = None
    model: NumpyGainModel = None  # type: ignore[assignment]  # built by __post_init__

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = NumpyGainModel(self.arch, self.params)

    @property
    def window(self) -> int:
        return int(self.metadata["window"])

    @property
    def horizon(self) -> int:
        """Labels over which the gain is predicted."""
        return int(self.metadata["horizon"])

    @property
    def decision(self) -> str:
        """The gain statistic compared with the threshold: ``"mean"`` or a quantile level such as ``"q0.9"``."""
        return str(self.metadata.get("decision", "mean"))

    def decision_index(self) -> int | None:
        """Column of the decision quantile among the model's quantiles (None for the mean)."""
        if self.decision == "mean":
            return None
        return list(self.arch.quantiles).index(float(self.decision[1:]))

    @property
    def quantile_shifts(self) -> np.ndarray | None:
        """Calibration shift of each quantile level (points), or None when the file has none."""
        shifts = self.metadata.get("quantile_shifts")
        return None if shifts is None else np.asarray(shifts, dtype=np.float64)

    @property
    def quantile_shifts_by_family(self) -> dict[str, np.ndarray]:
        """Calibration shifts per model family (empty when the file has none)."""
        table = self.metadata.get("quantile_shifts_by_family") or {}
        return {str(family): np.asarray(shifts, dtype=np.float64) for family, shifts in table.items()}

    def shifts_for(self, family: str | None) -> np.ndarray | None:
        """The shifts that calibrate a model of ``family``: its own, else the pooled ones (None: none)."""
        if family is not None:
            own = self.quantile_shifts_by_family.get(family)
            if own is not None:
                return own
        return self.quantile_shifts

    def gain(self, features: np.ndarray, family: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Quantiles (calibrated when the file holds shifts) and mean of the gain.

        Parameters
        ----------
        features : ndarray of shape (n, n_features) or (n_features,)
        family : str or None, default=None
            The task model's family (:func:`~metalearn.stopping.model_family.model_family`):
            its own calibration shifts when the file holds them, else the pooled ones.

        Returns
        -------
        quantiles : ndarray of shape (n, K) (or (K,))
            Non-decreasing along the last axis.
        mean : ndarray of shape (n,) (or scalar array)
        """
        quantiles, mean = self.model(features)
        return calibrated_quantiles(quantiles, self.shifts_for(family)), mean

    @property
    def patience(self) -> int:
        """Recommended patience: calls in a row below the threshold before stopping (default 1)."""
        return int(self.metadata.get("patience", 1))

    @property
    def threshold(self) -> float:
        """Recommended threshold of the expected gain, in accuracy points."""
        return float(self.metadata["threshold"])


def calibrated_quantiles(quantiles: np.ndarray, shifts: np.ndarray | None) -> np.ndarray:
    """The regressor's quantiles plus each level's calibration shift, kept non-decreasing.

    Parameters
    ----------
    quantiles : ndarray of shape (..., K)
        Increasing along the last axis.
    shifts : ndarray of shape (K,) or None
        None returns ``quantiles`` unchanged (a file without calibration).

    Returns
    -------
    ndarray of shape (..., K)
        Shifts of different sizes could cross two levels; the running maximum along the levels
        keeps them in order (a crossed level takes the value of the one below).
    """
    if shifts is None:
        return quantiles
    return np.maximum.accumulate(np.asarray(quantiles, dtype=np.float64) + shifts, axis=-1)


def _where(path: Path | str | None) -> str:
    return STOPPING_RULE_KIND.where(path) if path is not None else "stopping rule"


def _check_metadata(meta: Mapping[str, Any], where: str) -> GainModelArchitecture:
    # Bounded here, at load: a rule that loads must not fail (or allocate without bound) at its
    # first call. The limits live in metalearn.stopping.limits.
    from metalearn.stopping.limits import MAX_HORIZON, MAX_PATIENCE, MAX_THRESHOLD_POINTS, MAX_WINDOW

    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise StoppingRuleFileError(f"{where}: metadata lacks required key(s) {missing}")
    try:
        arch = GainModelArchitecture.from_dict(meta["architecture"])
    except InvalidInputError as exc:
        raise StoppingRuleFileError(f"{where}: {exc}") from None
    unnamed = [q for q in arch.quantiles if float(f"{q:g}") != q]
    if unnamed:  # a decision names its level as f"q{level:g}": each level must round-trip
        raise StoppingRuleFileError(
            f"{where}: architecture quantile level(s) {unnamed} have more than 6 significant digits; "
            "a level must be written exactly by its decision name (such as 0.9 or 0.975)"
        )
    feature_set = meta["feature_set"]
    if not isinstance(feature_set, Mapping):
        raise StoppingRuleFileError(f"{where}: metadata 'feature_set' must be an object, got {type(feature_set).__name__}")
    if (feature_set.get("name"), feature_set.get("version")) != (STOPPING_FEATURE_SET["name"], STOPPING_FEATURE_SET["version"]):
        raise StoppingRuleFileError(
            f"{where}: its feature set {feature_set.get('name')!r} version {feature_set.get('version')!r} is not one this "
            f"release computes ({STOPPING_FEATURE_SET['name']!r} version {STOPPING_FEATURE_SET['version']}); "
            "it was written by another metalearn release"
        )
    if list(feature_set.get("features", [])) != STOPPING_FEATURE_SET["features"]:
        raise StoppingRuleFileError(
            f"{where}: its features differ from what feature set {STOPPING_FEATURE_SET['name']}@"
            f"{STOPPING_FEATURE_SET['version']} computes in this release"
        )
    if arch.n_features != len(STOPPING_FEATURE_SET["features"]):
        raise StoppingRuleFileError(
            f"{where}: the regressor takes {arch.n_features} features, the feature set has {len(STOPPING_FEATURE_SET['features'])}"
        )
    for key, minimum, maximum in (("window", 2, MAX_WINDOW), ("horizon", 1, MAX_HORIZON)):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= maximum:
            raise StoppingRuleFileError(
                f"{where}: metadata {key!r} must be an integer in [{minimum}, {maximum}], got {str(value)[:40]}"
            )
    patience = meta.get("patience", 1)
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or not 1 <= patience <= MAX_PATIENCE:
        raise StoppingRuleFileError(
            f"{where}: metadata 'patience' must be an integer in [1, {MAX_PATIENCE}], got {str(patience)[:40]}"
        )
    decision = meta.get("decision", "mean")
    levels = [f"q{q:g}" for q in arch.quantiles]
    if decision != "mean" and decision not in levels:
        raise StoppingRuleFileError(
            f"{where}: metadata 'decision' must be 'mean' or one of the model's quantiles {levels}, got {str(decision)[:60]!r}"
        )
    shifts = meta.get("quantile_shifts")
    if shifts is not None and (
        not isinstance(shifts, list) or len(shifts) != len(arch.quantiles)
        or not all(_bounded_points(v) for v in shifts)
    ):
        raise StoppingRuleFileError(
            f"{where}: metadata 'quantile_shifts' must be a list of {len(arch.quantiles)} finite numbers of accuracy "
            f"points in [-{MAX_THRESHOLD_POINTS:g}, {MAX_THRESHOLD_POINTS:g}] (one per quantile level), got {str(shifts)[:80]}"
        )
    by_family = meta.get("quantile_shifts_by_family")
    if by_family is not None and (
        not isinstance(by_family, dict)
        or not all(family in MODEL_FAMILIES for family in by_family)
        or not all(isinstance(v, list) and len(v) == len(arch.quantiles) and all(_bounded_points(x) for x in v)
                   for v in by_family.values())
    ):
        raise StoppingRuleFileError(
            f"{where}: metadata 'quantile_shifts_by_family' must map model families ({', '.join(MODEL_FAMILIES)}) to "
            f"lists of {len(arch.quantiles)} finite numbers of accuracy points in [-{MAX_THRESHOLD_POINTS:g}, "
            f"{MAX_THRESHOLD_POINTS:g}], got {str(by_family)[:80]}"
        )
    threshold = meta["threshold"]
    try:
        finite = not isinstance(threshold, bool) and isinstance(threshold, (int, float)) and math.isfinite(float(threshold))
    except OverflowError:  # an int such as 10**400
        finite = False
    if not finite or not abs(float(threshold)) <= MAX_THRESHOLD_POINTS:
        raise StoppingRuleFileError(
            f"{where}: metadata 'threshold' must be a finite number of accuracy points in "
            f"[-{MAX_THRESHOLD_POINTS:g}, {MAX_THRESHOLD_POINTS:g}], got {str(threshold)[:40]}"
        )
    return arch


def _bounded_points(value: Any) -> bool:
    """Whether ``value`` is a finite number of accuracy points within the threshold's bound."""
    from metalearn.stopping.limits import MAX_THRESHOLD_POINTS

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        number = float(value)
    except OverflowError:  # an int such as 10**400
        return False
    return math.isfinite(number) and abs(number) <= MAX_THRESHOLD_POINTS


def save_stopping_rule(
    path: str | os.PathLike[str], arch: GainModelArchitecture, params: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
) -> Path:
    """Write a stopping-rule file atomically (temporary file, fsync, rename).

    Parameters
    ----------
    path : str or path-like
        Destination (conventionally ``*.safetensors``).
    arch : GainModelArchitecture
    params : dict of str to ndarray
        Every entry of :func:`~metalearn.stopping.model.parameter_shapes`, finite.
    metadata : dict
        Required: ``window``, ``horizon``, ``threshold``; ``feature_set`` defaults to this
        release's. Anything else JSON-able is kept (the model card). ``format``,
        ``format_version``, ``architecture``, ``package_version`` and ``created`` are filled here.

    Returns
    -------
    Path

    Raises
    ------
    StoppingRuleFileError
        Bad weights or metadata, or the file cannot be written.
    """
    target = Path(path)
    save_model_file(
        target, arch, params, metadata, kind=STOPPING_RULE_KIND, arch_type=GainModelArchitecture, model_type=NumpyGainModel,
        check_metadata=_check_metadata, feature_set=STOPPING_FEATURE_SET, where=f"cannot save {_where(target)}",
    )
    return target


def _read(path: Path) -> StoppingRuleFile:
    arch, model, meta = read_model_file(
        path, kind=STOPPING_RULE_KIND, model_type=NumpyGainModel, check_metadata=_check_metadata, where=_where(path)
    )
    return StoppingRuleFile(arch=arch, params=model.params, metadata=meta, path=path, model=model)


def read_stopping_rule(path_or_name: str | os.PathLike[str]) -> StoppingRuleFile:
    """Read and check a stopping-rule file (numpy only; nothing in it is executed).

    Parameters
    ----------
    path_or_name : str or path-like
        A file, or the name of a released rule (:func:`resolve_stopping_rule_path`).

    Raises
    ------
    StoppingRuleFileError
        Missing, not a stopping rule (a policy, a pickle, a zip...), truncated, corrupted,
        wrong shapes, non-finite weights, unknown architecture, features or version.
    UnknownNameError
        Neither a file nor a released name.
    """
    path = resolve_stopping_rule_path(path_or_name)
    try:
        return _read(path)
    except MetalearnError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed file must never surface as another error
        raise StoppingRuleFileError(f"{_where(path)} is malformed ({type(exc).__name__}: {exc})") from None


def stopping_rule_search_dirs() -> list[Path]:
    """Folders searched for named rules: ``stopping/`` in every named-policy folder."""
    return [folder / _SUBFOLDER for folder in policy_search_dirs()]


def released_stopping_rule_names() -> list[str]:
    """Names of the released learned rules found in :func:`stopping_rule_search_dirs`."""
    return names_in_folders(stopping_rule_search_dirs())


def _listing() -> str:
    available = released_stopping_rule_names()
    return f"released stopping rules: {', '.join(available)}" if available else "no released stopping rule is installed"


def resolve_stopping_rule_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The file a path or a released rule name refers to (:func:`~metalearn.policies.names.resolve_named_file`).

    Raises
    ------
    UnknownNameError
        A bare name that is no released rule.
    StoppingRuleFileError
        A path that does not exist, or an argument that is no path or name.
    """
    return resolve_named_file(
        name_or_path, noun="stopping rule", label=STOPPING_RULE_KIND.label, error=StoppingRuleFileError,
        search_dirs=stopping_rule_search_dirs, listing=_listing, suffix=POLICY_SUFFIX,
    )


def format_stopping_card(rule: StoppingRuleFile) -> str:
    """The rule's model card as text (what it was trained on, how, what it expects)."""
    meta = rule.metadata
    lines = [f"stopping rule: {rule.path}" if rule.path else "stopping rule: (not saved)"]
    lines.append(
        f"  format: {meta.get('format')} v{meta.get('format_version')}, written by metalearn "
        f"{meta.get('package_version', '?')} on {meta.get('created', '?')}"
    )
    lines.append(
        f"  predicts: quantiles {list(rule.arch.quantiles)} and the mean of the gain in test accuracy (points) "
        f"from the next {rule.horizon} labels"
    )
    statistic = "expected (mean) gain" if rule.decision == "mean" else f"{float(rule.decision[1:]):.0%} quantile of the gain"
    lines.append(
        f"  recommended setting: stop when the {statistic} is below {rule.threshold:g} points for "
        f"{rule.patience} loop(s) in a row"
    )
    lines.append(
        f"  regressor: {rule.arch.name} v{rule.arch.version}, {rule.arch.n_features} features, hidden {rule.arch.hidden}, "
        f"{sum(v.size for v in rule.params.values())} parameters; window {rule.window} loops"
    )
    if rule.quantile_shifts is not None:
        shifts = ", ".join(f"q{q:g} {v:+.2f}" for q, v in zip(rule.arch.quantiles, rule.quantile_shifts))
        lines.append(f"  quantile calibration: shifts (points) {shifts}")
    for family, family_shifts in rule.quantile_shifts_by_family.items():
        shifts = ", ".join(f"q{q:g} {v:+.2f}" for q, v in zip(rule.arch.quantiles, family_shifts))
        lines.append(f"  quantile calibration for {family} models: shifts (points) {shifts}")
    known = {*_STANDARD, *_REQUIRED, "patience", "decision", "quantile_shifts", "quantile_shifts_by_family"}
    for key, value in meta.items():
        if key in known:
            continue
        bench = value.get("validation_benchmark") if key == "release" and isinstance(value, dict) else None
        if isinstance(bench, dict) and isinstance(bench.get("overall"), list):
            lines.append(f"  {key}:")
            lines.extend(f"    {sub}: {short_value(item, 300)}" for sub, item in value.items() if sub != "validation_benchmark")
            lines.append(f"    validation benchmark ({bench.get('folder', '?')}):")
            lines.extend(f"      {short_value(row, 300)}" for row in bench["overall"])
            continue
        if isinstance(value, dict):
            lines.append(f"  {key}:")
            for sub, item in value.items():
                lines.append(f"    {sub}: {short_value(item, 300)}")
        else:
            lines.append(f"  {key}: {short_value(value, 300)}")
    # Every line escaped on its own: a value holding control characters or line breaks
    # cannot clear the screen or spoof a line of the card.
    return "\n".join(printable(line) for line in lines)
