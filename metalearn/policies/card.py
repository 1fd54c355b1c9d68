"""The model card as text: what a policy was trained on, how, and what it expects.

:func:`short_value` and :func:`printable_tree` are shared with the stopping rule's card
(:func:`~metalearn.stopping.file.format_stopping_card`).
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping
from typing import Any

from metalearn.common.text import printable
from metalearn.policies.format import REQUIRED_METADATA, STANDARD_METADATA, PolicyFile
from metalearn.policies.numpy_scorer import GatedLinearScorer

__all__ = ["format_model_card", "short_value", "printable_tree"]


def short_value(value: Any, limit: int = 100) -> str:
    """A one-line rendering of a metadata value of at most ``limit`` characters."""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, list):
        text = f"{len(value)} values" if len(value) > 8 or any(isinstance(v, (list, dict)) for v in value) else json.dumps(value)
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={short_value(v, 40)}" for k, v in value.items())
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pick(d: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if d.get(key) is not None:
            return d[key]
    return None


def format_model_card(policy: PolicyFile) -> str:
    """The policy's model card as text: what it was trained on, how, and what it expects.

    Parameters
    ----------
    policy : PolicyFile

    Returns
    -------
    str
        Several lines, no trailing newline.
    """
    meta = printable_tree(policy.metadata)  # text from a file never reaches the terminal raw
    arch = policy.arch
    lines = [f"policy: {printable(policy.path)}" if policy.path else "policy: (not saved)"]
    lines.append(
        f"  format: {meta.get('format')} v{meta.get('format_version')}, written by metalearn "
        f"{meta.get('package_version', '?')} on {meta.get('created', '?')}"
    )
    suite = meta.get("task_suite")
    lines.append(f"  trained on: {short_value(suite, 200) if suite is not None else 'not recorded'}")
    trainer = meta.get("trainer")
    if isinstance(trainer, dict):
        lines.append(f"  trainer: {trainer.get('method', '?')}")
        settings = trainer.get("settings")
        if isinstance(settings, dict) and settings:
            for key, value in settings.items():
                lines.append(f"    {key}: {short_value(value)}")
    else:
        lines.append(f"  trainer: {short_value(trainer) if trainer is not None else 'not recorded'}")
    lines.append(f"  seed: {meta.get('seed', 'not recorded')}")
    training = meta.get("training")
    if isinstance(training, dict) and training:
        seconds = _pick(training, "seconds", "wall_seconds", "training_seconds", "time_seconds", "time")
        steps = _pick(training, "steps", "total_steps", "timesteps", "total_timesteps", "iterations")
        summary = []
        if seconds is not None:
            summary.append(f"time {short_value(seconds)} s" if isinstance(seconds, (int, float)) else f"time {seconds}")
        if steps is not None:
            summary.append(f"steps {short_value(steps)}")
        lines.append(f"  training: {', '.join(summary) if summary else 'see below'}")
        for key, value in training.items():
            lines.append(f"    {key}: {short_value(value)}")
    else:
        lines.append("  training: not recorded")
    lines.append(
        f"  architecture: {arch.name} v{arch.version}, {arch.n_candidate_features} candidate + "
        f"{arch.n_context_features} context features, hidden {arch.hidden}, {policy.n_parameters} parameters"
    )
    if arch.residual:
        sign = "+" if arch.prior_sign == 1 else "-"
        scale = float(policy.params["prior_scale"][0])
        lines.append(
            f"  residual prior: score = {sign}{scale:.4g} x {arch.prior_feature} (raw feature) + learned correction"
        )
    schema = policy.schema
    if isinstance(policy.scorer, GatedLinearScorer):
        weight_lines = policy.scorer.weight_lines(schema.candidate_features, schema.context_features)
        lines.append("  correction weights (each candidate feature's weight as a function of the loop context):")
        lines.extend(f"    {line}" for line in weight_lines or ["(all zero: ranks as the prior)"])
        sentences = gate_sentences(policy)
        if sentences:
            lines.append("  what the gates learned, in words:")
            lines.extend(f"    - {sentence}" for sentence in sentences)
    lines.append(
        f"  feature schema: {schema.id} ({schema.n_candidate_features} candidate, "
        f"{schema.n_context_features} context features; `metalearn features` describes them)"
    )
    lines.append(f"  window: {policy.window} loops" + (" (unused: the schema keeps no history)" if schema.probabilities_only else ""))
    lines.append(f"  candidates per query: {policy.n_candidates if policy.n_candidates is not None else 'not recorded'}")
    validation = meta.get("validation")
    if isinstance(validation, dict) and validation:
        lines.append("  validation:")
        for key, value in validation.items():
            lines.append(f"    {key}: {short_value(value)}")
    else:
        lines.append(f"  validation: {short_value(validation) if validation is not None else 'not recorded'}")
    known = {
        *STANDARD_METADATA, *REQUIRED_METADATA, "n_candidates", "task_suite", "trainer", "seed", "training",
        "validation", "release",
    }
    for key in meta:
        if key not in known:
            lines.append(f"  {key}: {short_value(meta[key])}")
    release = meta.get("release")
    if isinstance(release, dict):
        lines.extend(_release_lines(release))
    return "\n".join(lines)


def gate_sentences(policy: PolicyFile, min_weight: float = 0.25, per_gate: int = 3) -> list[str]:
    """A gated policy's weights in words: what it prefers at every loop, and what each context feature changes.

    The gated scorer gives each candidate feature ``f`` the weight ``W[f, 0] + sum_g W[f, g] * z_g``
    (``z``: the loop's context features, most in [0, 1]). A positive weight prefers records with
    a high value of ``f``. One sentence for the constant column, then one per context feature
    whose gates reach ``min_weight``, naming its ``per_gate`` largest gates.

    Parameters
    ----------
    policy : PolicyFile
        A ``gated_linear`` policy (anything else: no sentences).
    min_weight : float
        Weights smaller in magnitude are left out.
    per_gate : int
        Candidate features named per sentence.

    Returns
    -------
    list of str
    """
    if not isinstance(policy.scorer, GatedLinearScorer):
        return []
    weights = policy.params["weights"]
    schema = policy.schema
    features = schema.candidate_features

    def leaning(column: int) -> str:
        order = sorted(range(len(features)), key=lambda f: -abs(float(weights[f, column])))
        terms = [(features[f], float(weights[f, column])) for f in order[:per_gate] if abs(weights[f, column]) >= min_weight]
        return "; ".join(f"{'higher' if w > 0 else 'lower'} `{name}` ({w:+.2f})" for name, w in terms)

    sentences = []
    always = leaning(0)
    if always:
        sentences.append(f"at every loop, on top of preferring small margins, it prefers records with {always}")
    for g, name in enumerate(schema.context_features):
        lean = leaning(1 + g)
        if lean:
            what = _first_sentence(schema.descriptions.get(name, ""))
            what = f" ({what[:1].lower()}{what[1:]})" if what else ""
            sentences.append(f"the higher `{name}`{what}, the more it prefers {lean}")
    return sentences


def _first_sentence(description: str, width: int = 140) -> str:
    """A feature description's first sentence, cut at a word (never mid-word) if still longer than ``width``."""
    first = description.split(". ", 1)[0].strip().rstrip(".")
    return textwrap.shorten(first, width=width, placeholder=" ...")


def printable_tree(value: Any) -> Any:
    """A copy of JSON data with control characters escaped in every key and string."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): printable_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable_tree(v) for v in value]
    return value


def _release_lines(release: Mapping[str, Any]) -> list[str]:
    """The ``release`` section (scripts/release_policy.py): name, choice and validation table."""
    lines = [f"  released as: {release.get('name', '?')} on {release.get('released', '?')}"]
    if release.get("chosen_by"):
        lines.append(f"    chosen by: {short_value(release['chosen_by'], 400)}")
    bench = release.get("validation_benchmark")
    if isinstance(bench, dict):
        lines.append(f"    validation benchmark: {bench.get('folder', '?')} ({bench.get('metric', '')})")
        if bench.get("command"):
            lines.append(f"    command: {short_value(bench['command'], 400)}")
        rows = bench.get("overall")
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            columns = list(rows[0])
            cells = [[_cell(r.get(c)) for c in columns] for r in rows]
            widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
            lines.append("    " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
            lines.extend("    " + "  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells)
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.3g}" if abs(value) < 0.01 and value else f"{value:.2f}"
    return "n/a" if value is None else str(value)
