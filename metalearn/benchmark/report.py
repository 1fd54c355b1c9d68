"""The benchmark report: plots (PNG), a Markdown report and a self-contained HTML report.

:func:`write_report` turns the runner's ``runs`` and ``curves`` tables into, inside ``out_dir``:

- ``curves_<model>_<regime>_b<batch>.png``: learning curves (mean and 95% band across seeds),
  one figure per setting, one panel per dataset;
- ``critical_difference.png``: the strategies on a mean-rank axis, with bars joining groups
  that the Nemenyi test does not separate (a mean-rank bar chart with fewer than 2 problems);
- ``differences.png`` (or ``differences_<setting>.png`` for large benchmarks): per-problem
  mean differences to the reference with confidence intervals, coloured by win/tie/loss;
- ``compute_<model>_<regime>.png`` (only for runs that recorded their compute): the
  step-curve AULC against task-model fits and against seconds, one point per strategy and
  batch size, margin's points across batch sizes joined into a front;
- ``report.md`` (images linked relatively) and ``report.html`` (one file, images embedded).

Both documents are rendered from one list of content blocks, so they always say the same.
:func:`format_table` is the small Markdown table formatter used for them and by the CLI.

Plots are drawn on :class:`matplotlib.figure.Figure` objects saved with the Agg renderer, never
through ``pyplot``: no display is needed and the caller's matplotlib backend is left alone.
matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import base64
import contextvars
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from metalearn.benchmark.stats import (
    COMPUTE_KEYS,
    ORACLE,
    PROBLEM_KEYS,
    RANDOM,
    SETTING_KEYS,
    FriedmanResult,
    failed_runs,
    compute_summary,
    friedman_test,
    has_compute,
    mean_ranks,
    overall_comparison,
    paired_differences,
    rank_table,
    strategy_summary,
)
from metalearn.common.atomic import AtomicGroup, atomic_write_bytes
from metalearn.common.extras import extra_installed, require_extra
from metalearn.common.text import printable
from metalearn.exceptions import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "format_table",
    "write_report",
    "plot_learning_curves",
    "plot_critical_difference",
    "plot_differences",
    "plot_compute_front",
    "FRONT_STRATEGY",
]

DPI = 110
_OUTCOME_COLORS = {"win": "#2ca02c", "tie": "#8c8c8c", "loss": "#d62728", "n/a": "#cccccc"}
_METRIC_LABELS = {
    "aulc_accuracy": "AULC accuracy",
    "aulc_macro_f1": "AULC macro-F1",
    "step_aulc_accuracy": "step AULC accuracy",
    "step_aulc_macro_f1": "step AULC macro-F1",
    "final_accuracy": "final accuracy",
    "final_macro_f1": "final macro-F1",
}
_COUNT_COLUMNS = {"wins", "ties", "losses", "seed", "batch_size", "label_budget", "labels_to_98"}
_MAX_PROBLEMS_PER_FIGURE = 60
#: The strategy whose points at several fixed batch sizes are joined into the compute front.
FRONT_STRATEGY = "margin"


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _is_p_column(name: str) -> bool:
    return name == "p" or "p_value" in name


def _format_number(value: float, digits: int, signed: bool) -> str:
    if value == 0.0:
        return f"{0.0:.{digits}f}"
    if abs(value) < 10.0 ** (-digits):  # too small for the fixed format: one significant digit
        text = f"{value:.1g}"
        return ("+" + text) if signed and value > 0 else text
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _format_column(name: str, column: pd.Series, digits: int) -> list[str]:
    """Format one column as strings: counts as integers, p-values to 3 decimals, NaN as n/a."""
    name = str(name)
    if pd.api.types.is_bool_dtype(column):
        return ["yes" if v else "no" for v in column]
    if pd.api.types.is_integer_dtype(column):
        return [str(int(v)) for v in column]
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        countlike = name.startswith("n_") or name in _COUNT_COLUMNS
        integral = countlike and finite.size > 0 and bool(np.all(finite == np.round(finite)))
        signed = "diff" in name or name.startswith("ci_")
        out = []
        for v in values:
            if not math.isfinite(v):
                out.append("n/a")
            elif _is_p_column(name):
                out.append("<0.001" if v < 0.001 else f"{v:.3f}")
            elif integral:
                out.append(str(int(round(v))))
            else:
                out.append(_format_number(float(v), digits, signed))
        return out
    return ["" if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v) for v in column]


def _formatted_frame(
    df: pd.DataFrame, digits: int = 2, index: bool | None = None, headers: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, list[bool]]:
    """``df`` with every cell formatted as a string (the index becomes columns if kept), the
    columns renamed by ``headers`` after formatting, and which columns are numeric."""
    if index is None:
        index = not isinstance(df.index, pd.RangeIndex)
    frame = df.reset_index() if index else df.reset_index(drop=True)
    names = [str(c) if c != "index" else "" for c in frame.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns
    ]
    cells = [_format_column(n, frame[c], digits) for n, c in zip(names, frame.columns)]
    headers = dict(headers or {})
    out = pd.DataFrame(dict(enumerate(cells)), index=range(len(frame)))
    out.columns = [headers.get(n, n) for n in names]
    return out, numeric


def format_table(
    df: pd.DataFrame, *, digits: int = 2, index: bool | None = None, headers: Mapping[str, str] | None = None
) -> str:
    """Render a DataFrame as a Markdown (GitHub) table, numbers rounded for reading.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    digits : int
        Decimals of float columns. Columns whose name contains ``diff`` or starts with ``ci_``
        get an explicit sign; p-value columns (``p_value``...) get 3 decimals and ``<0.001``;
        count columns (``n_*``, wins, ties, losses...) holding whole numbers are printed as
        integers; NaN prints as ``n/a``; a non-zero value too small for ``digits`` keeps one
        significant digit.
    index : bool, optional
        Include the index as the first column(s); by default only when it is not a plain
        ``RangeIndex``.
    headers : mapping of str to str, optional
        Display names of columns, applied after formatting (so the formatting rules above still
        follow the original names).

    Returns
    -------
    str
        The table, numeric columns right-aligned, ``|`` in cells escaped; an empty frame gives
        a header-only table (or ``"(empty)"`` without columns).
    """
    if not isinstance(df, pd.DataFrame):
        raise InvalidInputError(f"format_table needs a pandas DataFrame, got {type(df).__name__}")
    if df.shape[1] == 0 and not (index or (index is None and not isinstance(df.index, pd.RangeIndex))):
        return "(empty)"
    frame, numeric = _formatted_frame(df, digits, index, headers)

    def cell(text: str) -> str:
        # Names come from files (dataset and strategy names): control characters are escaped.
        return printable(text.replace("\r", " ").replace("\n", " ")).replace("\\", "\\\\").replace("|", "\\|")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if num else "---" for num in numeric) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


# --------------------------------------------------------------------------------------------
# Plot helpers
# --------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float, *, constrained: bool = True) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)


#: The outputs of the report being written (its group, and the PNG bytes staged in it): set by
#: :func:`write_report`, so plots and pages are replaced all together or not at all.
_REPORT_OUTPUTS: contextvars.ContextVar[tuple[AtomicGroup, dict[Path, bytes]] | None] = contextvars.ContextVar(
    "report_outputs", default=None
)


def _write_output(path: Path, data: bytes) -> None:
    """Write one output of the report: staged in the report's group while one is written, else atomically."""
    staged = _REPORT_OUTPUTS.get()
    if staged is None:
        atomic_write_bytes(path, data)
        return
    group, outputs = staged

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    group.add(path, write)
    outputs[Path(path)] = data


def _output_exists(path: Path) -> bool:
    """Whether an output was staged by the report being written, or is on disk."""
    staged = _REPORT_OUTPUTS.get()
    return (staged is not None and Path(path) in staged[1]) or Path(path).exists()


def _output_bytes(path: Path) -> bytes:
    """An output's content: staged by the report being written, else on disk."""
    staged = _REPORT_OUTPUTS.get()
    if staged is not None and Path(path) in staged[1]:
        return staged[1][Path(path)]
    return Path(path).read_bytes()


def _save(fig: "Figure", path: Path, **savefig_kwargs: Any) -> Path:
    """Write ``fig`` as a small PNG: rendered, then reduced to a 256-colour palette.

    Plots are committed with the benchmark results; a palette PNG is about a third of the
    size of matplotlib's RGBA one and looks the same for line plots.
    """
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", **savefig_kwargs)
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    png = io.BytesIO()
    palette.save(png, format="PNG", optimize=True)
    _write_output(path, png.getvalue())
    return path


def _setting_label(model: Any, regime: Any, batch_size: Any) -> str:
    return f"{model} · {regime} start · batch {batch_size}"


def _slug(*parts: Any) -> str:
    text = "_".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _strategy_styles(strategies: Sequence[str], reference: str) -> dict[str, dict[str, Any]]:
    """One consistent look per strategy: reference thick, oracle black dashed, random grey."""
    from matplotlib import colormaps

    # colormaps[...] is typed as a Colormap; these three are ListedColormaps, with .colors.
    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i not in (0, 7)]  # type: ignore[attr-defined]
    palette += list(colormaps["Dark2"].colors) + list(colormaps["tab20b"].colors)  # type: ignore[attr-defined]
    styles: dict[str, dict[str, Any]] = {}
    k = 0
    for name in strategies:
        if name == reference:
            styles[name] = dict(color=colormaps["tab10"].colors[0], lw=2.8, ls="-", zorder=5)  # type: ignore[attr-defined]
        elif name == ORACLE:
            styles[name] = dict(color="black", lw=1.6, ls="--", zorder=4)
        elif name == RANDOM:
            styles[name] = dict(color="#7f7f7f", lw=1.5, ls="-", zorder=3)
        else:
            styles[name] = dict(color=palette[k % len(palette)], lw=1.5, ls="-", zorder=3)
            k += 1
    return styles


def _strategy_order(runs: pd.DataFrame, metric: str, reference: str) -> list[str]:
    """Strategies by mean rank (best first); strategies without ok runs last."""
    names = sorted(map(str, runs["strategy"].unique()))
    ranked = mean_ranks(runs, metric)["strategy"].tolist() if (runs["status"] == "ok").any() else []
    return ranked + [n for n in names if n not in ranked]


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def plot_learning_curves(
    curves: pd.DataFrame,
    out_dir: str | Path,
    *,
    reference: str = "margin",
    score: str = "accuracy",
    strategies: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> list[Path]:
    """Learning curves with confidence bands across seeds, one PNG per setting.

    Parameters
    ----------
    curves : pandas.DataFrame
        The curves table (``dataset, model, regime, batch_size, seed, strategy, n_bought`` and
        the ``score`` column); only rows of ok runs should be present.
    out_dir : path
        Folder of the PNGs (``curves_<model>_<regime>_b<batch>.png``).
    reference : str
        Strategy drawn thicker.
    score : str
        Curve column on the y axis (``accuracy`` or ``macro_f1``).
    strategies : sequence of str, optional
        Legend order; defaults to the sorted names present.
    confidence : float
        Level of the t-based band of the mean across seeds at each ``n_bought``.

    Returns
    -------
    list of Path
        The PNG files written (none for an empty table).
    """
    require_extra("plot", "the benchmark plots")
    needed = [*PROBLEM_KEYS, "seed", "strategy", "n_bought", score]
    missing = [c for c in needed if c not in curves.columns]
    if missing:
        raise InvalidInputError(f"curves lacks the column(s) {', '.join(missing)}")
    out_dir = Path(out_dir)
    if curves.empty:
        return []
    order = list(strategies) if strategies is not None else sorted(map(str, curves["strategy"].unique()))
    order += sorted(set(map(str, curves["strategy"].unique())) - set(order))
    styles = _strategy_styles(order, reference)
    agg = (
        curves.groupby([*PROBLEM_KEYS, "strategy", "n_bought"], sort=True)[score]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    n = agg["count"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tq = np.where(n > 1, sps.t.ppf(0.5 + confidence / 2.0, np.maximum(n - 1, 1)), 0.0)
        half = np.nan_to_num(tq * agg["std"].to_numpy(dtype=float) / np.sqrt(n))
    agg["low"], agg["high"] = agg["mean"] - half, agg["mean"] + half
    label = "test accuracy" if score == "accuracy" else f"test {score.replace('_', '-')}"
    from matplotlib.ticker import MaxNLocator

    paths = []
    for (model, regime, batch), setting in agg.groupby(list(SETTING_KEYS), sort=True):
        datasets = sorted(map(str, setting["dataset"].unique()))
        ncols = min(3, len(datasets))
        nrows = math.ceil(len(datasets) / ncols)
        width = max(4.4 * ncols + 0.4, 8.0)
        fig = _new_figure(width, 3.1 * nrows + 1.2 if ncols > 1 else 5.0)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        present: list[str] = []
        for i, dataset in enumerate(datasets):
            ax = axes[i // ncols][i % ncols]
            data = setting.loc[setting["dataset"].astype(str) == dataset]
            for name in order:
                line = data.loc[data["strategy"] == name]
                if line.empty:
                    continue
                st = styles[name]
                x = line["n_bought"].to_numpy(dtype=float)
                ax.plot(x, line["mean"], color=st["color"], lw=st["lw"], ls=st["ls"], zorder=st["zorder"], label=name)
                ax.fill_between(x, line["low"], line["high"], color=st["color"], alpha=0.12, lw=0, zorder=1)
                if name not in present:
                    present.append(name)
            seeds = int(data.groupby("strategy")["count"].max().max()) if not data.empty else 0
            ax.set_title(f"{dataset} ({seeds} seeds)", fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
            if i % ncols == 0:
                ax.set_ylabel(label, fontsize=9)
            if i // ncols == nrows - 1 or i + ncols >= len(datasets):
                ax.set_xlabel("labels bought", fontsize=9)
        for j in range(len(datasets), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
        legend = [n for n in order if n in handles]
        fig.legend(
            [handles[n] for n in legend],
            [f"{n} (reference)" if n == reference else n for n in legend],
            loc="outside lower center",
            ncol=min(len(legend), max(2, int(width / 1.8))),
            fontsize=9,
            frameon=False,
        )
        fig.suptitle(
            f"Learning curves: {_setting_label(model, regime, batch)}\n"
            f"mean and {confidence:.0%} confidence band across seeds",
            fontsize=11,
        )
        paths.append(_save(fig, out_dir / f"curves_{_slug(model, regime, f'b{batch}')}.png"))
    return paths


def plot_critical_difference(
    result: FriedmanResult,
    path: str | Path,
    *,
    reference: str = "margin",
    fallback_ranks: pd.Series | None = None,
    title: str | None = None,
) -> Path:
    """Critical-difference diagram (Demsar, 2006), or a mean-rank bar chart.

    Parameters
    ----------
    result : FriedmanResult
        From :func:`metalearn.benchmark.stats.friedman_test`.
    path : path
        The PNG file.
    reference : str
        Strategy printed in bold.
    fallback_ranks : pandas.Series, optional
        Mean ranks drawn as bars when the diagram cannot be drawn (fewer than 2 complete
        problems or 2 strategies); defaults to ``result.mean_ranks``.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        The PNG file.
    """
    require_extra("plot", "the benchmark plots")
    path = Path(path)
    ranks = result.mean_ranks
    if result.n_problems < 2 or result.n_strategies < 2 or math.isnan(result.critical_difference):
        bars = (fallback_ranks if fallback_ranks is not None else ranks).sort_values()
        fig = _new_figure(7.0, 1.0 + 0.38 * max(len(bars), 1))
        ax = fig.add_subplot()
        if len(bars):
            y = np.arange(len(bars))
            colors = ["#1f77b4" if n == reference else "#9ecae1" for n in bars.index]
            ax.barh(y, bars.to_numpy(dtype=float), color=colors)
            ax.set_yticks(y, [str(n) for n in bars.index], fontsize=9)
            ax.invert_yaxis()
            for yi, v in zip(y, bars.to_numpy(dtype=float)):
                ax.text(v, float(yi), f" {v:.2f}", va="center", fontsize=8)
        ax.set_xlabel("mean rank (1 = best)", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title(title or f"Mean rank ({result.n_problems} problem(s): too few for a critical difference)", fontsize=10)
        return _save(fig, path)

    import scikit_posthocs

    k = len(ranks)
    fig = _new_figure(8.0, 1.6 + 0.28 * k, constrained=False)
    ax = fig.add_subplot()
    # scikit-posthocs draws the axis, the strategies and the crossbars joining those whose
    # pairwise Nemenyi p-value is at least alpha (the critical difference is in the subtitle).
    elements = scikit_posthocs.critical_difference_diagram(
        ranks.rename(index=str),
        result.nemenyi_p.rename(index=str, columns=str),
        ax=ax,
        alpha=result.alpha,
        label_fmt_left="{label} ({rank:.2f})",
        label_fmt_right="({rank:.2f}) {label}",
        label_props={"fontsize": 9},
        crossbar_props={"color": "black", "linewidth": 3.2},
        color_palette=["#444444"] * k,
    )
    for label in elements.get("labels", []):
        text = label.get_text()
        if text.startswith(f"{reference} (") or text.endswith(f") {reference}"):
            label.set_fontweight("bold")
    p = result.p_value
    subtitle = (
        f"Friedman p {_format_p(p)}, " if not math.isnan(p) else ""
    ) + (f"Nemenyi CD = {result.critical_difference:.2f} at alpha = {result.alpha:g}, {k} strategies, "
         f"{result.n_problems} problems")
    fig.suptitle((title or "Mean ranks (1 = best); bars join strategies not significantly different") + "\n" + subtitle,
                 fontsize=10, y=1.04)
    return _save(fig, path, bbox_inches="tight", pad_inches=0.2)


def _problem_label(row: pd.Series, with_setting: bool = True) -> str:
    if not with_setting:
        return str(row["dataset"])
    return f"{row['dataset']} · {row['model']}/{row['regime']}/b{row['batch_size']}"


def _format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 1e-10" if p < 1e-10 else f"= {p:.3g}"


def plot_differences(
    diffs: pd.DataFrame,
    path: str | Path,
    *,
    reference: str = "margin",
    strategies: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Per-problem mean differences to the reference with CI whiskers, one panel per strategy.

    Parameters
    ----------
    diffs : pandas.DataFrame
        From :func:`metalearn.benchmark.stats.paired_differences`.
    path : path
        The PNG file.
    reference : str
        Name of the reference (axis label).
    strategies : sequence of str, optional
        Panel order; defaults to sorted names.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        The PNG file.
    """
    require_extra("plot", "the benchmark plots")
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    diffs = diffs.loc[diffs["n_seeds"] > 0]
    names = [s for s in (strategies or sorted(diffs["strategy"].unique())) if s in set(diffs["strategy"])]
    problems = diffs[list(PROBLEM_KEYS)].drop_duplicates().sort_values(list(SETTING_KEYS) + ["dataset"])
    several = problems[list(SETTING_KEYS)].drop_duplicates().shape[0] > 1
    labels = [_problem_label(r, several) for _, r in problems.iterrows()]
    position = {tuple(r): i for i, r in enumerate(problems.itertuples(index=False))}
    n_panels = max(len(names), 1)
    ncols = min(4, n_panels)
    nrows = math.ceil(n_panels / ncols)
    panel_h = 0.8 + 0.24 * max(len(labels), 1)
    fig = _new_figure(3.3 * ncols + 2.4, panel_h * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for i, name in enumerate(names):
        ax = axes[i // ncols][i % ncols]
        d = diffs.loc[diffs["strategy"] == name]
        y = np.array([position[tuple(r)] for r in d[list(PROBLEM_KEYS)].itertuples(index=False)])
        mean = d["mean_diff"].to_numpy(dtype=float)
        low = d["ci_low"].to_numpy(dtype=float)
        high = d["ci_high"].to_numpy(dtype=float)
        colors = [_OUTCOME_COLORS.get(o, "#cccccc") for o in d["outcome"]]
        has_ci = np.isfinite(low) & np.isfinite(high)
        ax.hlines(y[has_ci], low[has_ci], high[has_ci], colors=np.array(colors, dtype=object)[has_ci].tolist(), lw=1.6)
        ax.scatter(mean, y, c=colors, s=26, zorder=3, edgecolors="white", linewidths=0.5)
        ax.axvline(0.0, color="black", lw=0.8)
        counts = d["outcome"].value_counts()
        ax.set_title(f"{name}\nW/T/L {counts.get('win', 0)}/{counts.get('tie', 0)}/{counts.get('loss', 0)}", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_xlabel(f"diff. to {reference} (points)", fontsize=8)
    for j in range(len(names), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    first = axes[0][0]
    first.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    first.set_ylim(len(labels) - 0.5, -0.5)
    handles = [
        Line2D([], [], marker="o", ls="", color=_OUTCOME_COLORS[o], label=o) for o in ("win", "tie", "loss")
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(title or f"Mean difference to {reference} per problem (95% CI across seeds)", fontsize=11)
    return _save(fig, path)


def plot_compute_front(
    summary: pd.DataFrame,
    out_dir: str | Path,
    *,
    metric: str = "step_aulc_accuracy",
    front: str = FRONT_STRATEGY,
    reference: str = "margin",
    strategies: Sequence[str] | None = None,
) -> list[Path]:
    """Score against compute, one PNG per ``(model, regime)`` setting, across batch sizes.

    Two panels: x = mean task-model fits per run, and mean fit + query seconds per run (both
    log scale); y = the mean ``metric`` (points). One point per strategy and batch size,
    labelled with its batch size; the ``front`` strategy's points are joined in batch-size
    order (the front that fixed batch sizes draw, e.g. margin at 1, 2, 5, 10, 20 and 50).

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`metalearn.benchmark.stats.compute_summary` with the same ``metric``.
    out_dir : path
        Folder of the PNGs (``compute_<model>_<regime>.png``).
    metric : str
        The score column of ``summary``.
    front : str
        Strategy whose points are joined across batch sizes.
    reference : str
        Strategy drawn thicker (as in the other plots).
    strategies : sequence of str, optional
        Legend order; defaults to the sorted names present.

    Returns
    -------
    list of Path
        The PNG files written (none for an empty summary).
    """
    require_extra("plot", "the benchmark plots")
    needed = [*COMPUTE_KEYS, "strategy", "batch_size", "n_fits", "compute_seconds", metric]
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise InvalidInputError(f"the compute summary lacks the column(s) {', '.join(missing)}")
    out_dir = Path(out_dir)
    if summary.empty:
        return []
    names = set(map(str, summary["strategy"]))
    order = [n for n in (strategies or []) if n in names] + sorted(names - set(strategies or []))
    styles = _strategy_styles(order, reference)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    label = _METRIC_LABELS.get(metric, metric)
    axes_x = (("n_fits", "task-model fits per run (mean, log scale)"),
              ("compute_seconds", "fit + query seconds per run (mean, log scale)"))
    paths = []
    for (model, regime), setting in summary.groupby(list(COMPUTE_KEYS), sort=True):
        fig = _new_figure(11.0, 4.8)
        axes = fig.subplots(1, 2, squeeze=False)[0]
        for ax, (x_column, x_label) in zip(axes, axes_x):
            for name in order:
                points = setting.loc[setting["strategy"].astype(str) == name].sort_values("batch_size")
                if points.empty:
                    continue
                st = styles[name]
                x = points[x_column].to_numpy(dtype=float)
                y = points[metric].to_numpy(dtype=float)
                joined = name == front and len(points) > 1
                ax.plot(x, y, color=st["color"], lw=st["lw"] if joined else 0, ls=st["ls"], marker="o", ms=5,
                        zorder=st["zorder"], label=f"{name} (front)" if joined else name)
                for xi, yi, batch in zip(x, y, points["batch_size"]):
                    ax.annotate(f"b{int(batch)}", (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7,
                                color=st["color"])
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="both", alpha=0.3)
            ax.tick_params(labelsize=8)
            ax.set_xlabel(x_label, fontsize=9)
            ax.set_ylabel(f"{label} (points)", fontsize=9)
        handles = {h.get_label(): h for h in axes[0].get_lines()}
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=min(len(handles), 5), fontsize=9, frameon=False)
        fig.suptitle(f"{label} against compute: {model} · {regime} start\n"
                     f"one point per strategy and batch size (bN); {front}'s points across batch sizes form the front",
                     fontsize=11)
        paths.append(_save(fig, out_dir / f"compute_{_slug(model, regime)}.png"))
    return paths


# --------------------------------------------------------------------------------------------
# Report content
# --------------------------------------------------------------------------------------------


@dataclass
class _Block:
    """One piece of report content: kind is h1/h2/h3/p/ul/table/img."""

    kind: str
    content: Any
    alt: str = ""
    headers: Mapping[str, str] | None = None


def _inline_html(text: str) -> str:
    out = html.escape(printable(text))
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _render_markdown(blocks: Iterable[_Block], out_dir: Path) -> str:
    parts = []
    for b in blocks:
        # Text holds names read from files: every control character is escaped (as on the terminal).
        if b.kind in ("h1", "h2", "h3"):
            parts.append("#" * int(b.kind[1]) + " " + printable(b.content))
        elif b.kind == "p":
            parts.append(printable(b.content, keep_newlines=True))
        elif b.kind == "ul":
            parts.append("\n".join(f"- {printable(item, keep_newlines=True)}" for item in b.content))
        elif b.kind == "table":
            parts.append(format_table(b.content, headers=b.headers))
        elif b.kind == "img":
            parts.append(f"![{b.alt}]({Path(b.content).relative_to(out_dir).as_posix()})")
    return "\n\n".join(parts) + "\n"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f5f7; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: .5em 0; }
"""


def _render_html(blocks: Iterable[_Block], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            parts.append(f"<{b.kind}>{_inline_html(b.content)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{_inline_html(b.content)}</p>")
        elif b.kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.content) + "</ul>")
        elif b.kind == "table":
            frame = _formatted_frame(b.content, headers=b.headers)[0]
            frame = frame.rename(columns=printable).map(lambda v: printable(v) if isinstance(v, str) else v)
            parts.append(frame.to_html(index=False, escape=True, border=0))
        elif b.kind == "img":
            data = base64.b64encode(_output_bytes(Path(b.content))).decode("ascii")
            parts.append(f'<img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _join(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _setup_block(runs: pd.DataFrame, reference: str, metric: str, alpha: float) -> list[_Block]:
    ok = runs.loc[runs["status"] == "ok"]
    datasets = sorted(map(str, runs["dataset"].unique()))
    strategies = sorted(map(str, runs["strategy"].unique()))
    seeds_per = runs.groupby([*PROBLEM_KEYS, "strategy"])["seed"].nunique()
    seeds = f"{int(seeds_per.min())}" if seeds_per.min() == seeds_per.max() else f"{int(seeds_per.min())} to {int(seeds_per.max())}"
    budget = sorted(pd.to_numeric(runs["label_budget"], errors="coerce").dropna().astype(int).unique()) if "label_budget" in runs else []
    n_problems = runs[list(PROBLEM_KEYS)].drop_duplicates().shape[0]
    items = [
        f"**datasets** ({len(datasets)}): {_join(datasets)}",
        f"**task models** (= query models): {_join(sorted(map(str, runs['model'].unique())))}",
        f"**regimes**: {_join(sorted(map(str, runs['regime'].unique())))}",
        f"**batch sizes**: {_join(sorted(int(b) for b in runs['batch_size'].unique()))}",
        f"**label budget**: {_join(budget) if budget else 'n/a'}",
        f"**paired seeds** per problem: {seeds}",
        f"**strategies** ({len(strategies)}): {_join(strategies)}; reference: `{reference}`",
        f"**problems** (dataset x model x regime x batch size): {n_problems}",
        f"**runs**: {len(runs)} ({len(ok)} ok, {len(runs) - len(ok)} failed)",
    ]
    blocks = [
        _Block("h2", "Setup"),
        _Block("ul", items),
        _Block(
            "p",
            f"Main metric: {_METRIC_LABELS.get(metric, metric)} (`{metric}`), in points (x100). Every strategy "
            "gets the same splits, initial labeled sets and task models per seed. Per problem, a strategy is "
            f"compared with `{reference}` seed by seed (only seeds where both runs succeeded): mean difference, "
            "t-based 95% CI and a Wilcoxon signed-rank test across seeds; **win**/**loss** = significant at "
            f"alpha = {alpha:g} in favour of/against the strategy, **tie** otherwise. Over problems: mean rank, "
            "win/tie/loss counts, a Wilcoxon signed-rank test of the per-problem mean differences, a Friedman "
            "test and the Nemenyi critical difference. Failed runs are excluded from every statistic (never "
            "scored as zero) and listed at the end. The interval and the test are different procedures and can "
            "disagree near the threshold (e.g. a win whose interval touches zero).",
        ),
    ]
    if seeds_per.max() < 6:
        blocks.append(
            _Block(
                "p",
                f"**Warning**: with {int(seeds_per.max())} seeds the exact Wilcoxon test cannot reach p < 0.05 "
                "(its smallest two-sided p-value is 2/2^n), so every per-problem outcome is a tie; use 6 seeds or more.",
            )
        )
    return blocks


def _headers(reference: str, metric: str) -> dict[str, str]:
    """Display names of the stats columns in the report."""
    return {
        "mean_rank": "mean rank",
        "n_problems": "problems",
        metric: _METRIC_LABELS.get(metric, metric),
        f"{metric}_std": "std",
        **{k: v for k, v in _METRIC_LABELS.items() if k != metric},
        "labels_to_98": "labels to 98% (median)",
        "reached_98": "reached 98%",
        "query_ms": "query ms",
        "n_ok": "ok runs",
        "n_failed": "failed runs",
        "mean_diff": f"diff. to {reference} (points)",
        "p_value": "p (Wilcoxon over problems)",
        "p_value_holm": "p (Holm)",
        "gap_closed": "gap closed (random to oracle)",
    }


def _overall_table(overall: pd.DataFrame, reference: str, by: Sequence[str] = ()) -> pd.DataFrame:
    table = overall.copy()
    if "wins" in table:
        table["W/T/L"] = [f"{w}/{t}/{l}" for w, t, l in zip(table["wins"], table["ties"], table["losses"])]
        table.loc[table["strategy"] == reference, ["W/T/L", "p_value"]] = ["", np.nan]
        if "p_value_holm" in table:
            table.loc[table["strategy"] == reference, "p_value_holm"] = np.nan
        table = table.drop(columns=["wins", "ties", "losses"])
    cols = [*by, "strategy", "mean_rank", "n_problems", "mean_diff", "W/T/L", "p_value", "p_value_holm", "gap_closed"]
    table = table[[c for c in cols if c in table.columns]]
    return table


def _setting_table(
    diffs: pd.DataFrame | None,
    overall_by: pd.DataFrame | None,
    ranks: pd.DataFrame,
    setting: tuple[Any, ...],
    reference: str,
) -> pd.DataFrame:
    """Rows: strategies of one setting; columns: mean rank, mean diff, W/T/L, p, per-dataset cells."""
    def in_setting(frame: pd.DataFrame) -> pd.DataFrame:
        mask = np.ones(len(frame), dtype=bool)
        for col, value in zip(SETTING_KEYS, setting):
            mask &= (frame[col] == value).to_numpy()
        return frame.loc[mask]

    r = in_setting(ranks)
    if diffs is None or overall_by is None:
        wide = r.pivot_table(index="strategy", columns="dataset", values="mean", aggfunc="first")
        wide.insert(0, "mean_rank", r.groupby("strategy")["rank"].mean())
        wide = wide.sort_values("mean_rank")
        wide.columns = [str(c) for c in wide.columns]
        return wide.reset_index()
    base = _overall_table(in_setting(overall_by), reference).drop(columns=list(SETTING_KEYS), errors="ignore")
    d = in_setting(diffs)
    cells: dict[str, dict[str, str]] = {}
    for row in d.itertuples(index=False):
        mark = {"win": " W", "loss": " L"}.get(row.outcome, "")
        text = "n/a" if not math.isfinite(row.mean_diff) else _format_number(float(row.mean_diff), 2, True) + mark
        cells.setdefault(str(row.dataset), {})[str(row.strategy)] = text
    for dataset in sorted(cells):
        base[dataset] = [cells[dataset].get(s, "" if s == reference else "n/a") for s in base["strategy"]]
    return base


def _compute_blocks(
    runs: pd.DataFrame, metric: str, reference: str, order: Sequence[str], out: Path, written: dict[str, Path] | None
) -> list[_Block]:
    """The "Compute" section: fits, seconds and step-curve AULC per strategy and batch size.

    ``written`` collects the plots, which are drawn only when it is given.
    """
    step = "step_aulc_macro_f1" if "macro_f1" in metric else "step_aulc_accuracy"
    plain = step[len("step_"):]
    summary = compute_summary(runs, step)
    if summary.empty:
        return []
    keys = [*COMPUTE_KEYS, "strategy", "batch_size"]
    table = summary.merge(compute_summary(runs, plain)[[*keys, plain]], on=keys, how="left")
    blocks = [
        _Block("h2", "Compute"),
        _Block(
            "p",
            "Per setting, strategy and batch size, means per run over its datasets and seeds: task-model fits "
            "(the initial model's included), seconds spent fitting them and in the strategy's queries, and the "
            f"step-curve AULC (`{step}`, points): at n labels bought, the score of the last model trained on at "
            "most n labels, so a strategy that retrains less is charged for the labels it bought before its "
            f"model caught up. The plain AULC (`{plain}`) is beside it. In the plots, {FRONT_STRATEGY}'s points "
            "at its batch sizes are joined into the front that fixed batch sizes draw.",
        ),
        _Block(
            "table",
            table,
            headers={
                "batch_size": "batch size", "n_runs": "runs", "n_fits": "fits", "fit_seconds": "fit s",
                "query_seconds": "query s", "compute_seconds": "fit + query s", step: _METRIC_LABELS[step],
                plain: _METRIC_LABELS[plain],
            },
        ),
    ]
    if written is not None:
        paths = plot_compute_front(summary, out, metric=step, reference=reference, strategies=order)
        settings = summary[list(COMPUTE_KEYS)].drop_duplicates().sort_values(list(COMPUTE_KEYS))
        for path, (model, regime) in zip(paths, settings.itertuples(index=False)):
            written[path.stem] = path
            blocks.append(_Block("img", path, f"{_METRIC_LABELS[step]} against compute, {model} · {regime} start"))
    return blocks


def _with_reference(runs: pd.DataFrame, reference: str, metric: str) -> bool:
    ok = runs.loc[(runs["status"] == "ok")]
    return bool((ok["strategy"] == reference).any()) and metric in runs.columns and bool(
        np.isfinite(pd.to_numeric(ok.loc[ok["strategy"] == reference, metric], errors="coerce")).any()
    )


def write_report(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    out_dir: str | Path,
    *,
    reference: str = "margin",
    metric: str = "aulc_accuracy",
    title: str = "metalearn benchmark report",
    formats: Sequence[str] = ("md", "html"),
    alpha: float = 0.05,
) -> dict[str, Path]:
    """Write the plots and the Markdown/HTML report of a benchmark, all of them or none.

    Every plot and page is staged first and then replaced together
    (:class:`~metalearn.common.atomic.AtomicGroup`): a full disk or an error part-way leaves
    the previous report and plots as they were and raises one line saying what failed.

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table (failed runs included: they are listed, not scored).
    curves : pandas.DataFrame
        The curves table (rows of ok runs).
    out_dir : path
        Folder of the report; created if missing. Existing files of the same names are replaced.
    reference : str
        Strategy the others are compared with. Without ok runs of it, the report shows ranks
        and summaries only.
    metric : str
        Main metric (``aulc_accuracy`` or ``aulc_macro_f1``...); the learning curves show test
        macro-F1 for a macro-F1 metric and test accuracy otherwise.
    title : str
        Title of the report.
    formats : sequence of {"md", "html"}
        Documents to write; the PNGs are always written.
    alpha : float
        Significance level of the per-problem tests and of the critical difference.

    Returns
    -------
    dict of str to Path
        ``"md"`` and/or ``"html"``, plus one entry per PNG keyed by its file stem
        (``curves_<setting>``, ``critical_difference``, ``differences``...).
    """
    with AtomicGroup() as group:
        token = _REPORT_OUTPUTS.set((group, {}))
        try:
            written = _write_report(runs, curves, out_dir, reference, metric, title, formats, alpha)
        finally:
            _REPORT_OUTPUTS.reset(token)
        group.commit()
    return written


def _write_report(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    out_dir: str | Path,
    reference: str,
    metric: str,
    title: str,
    formats: Sequence[str],
    alpha: float,
) -> dict[str, Path]:
    """The body of :func:`write_report`: plots and pages, staged in the report's group."""
    formats = tuple(formats)
    unknown = [f for f in formats if f not in ("md", "html")]
    if unknown:
        raise InvalidInputError(f"unknown report format(s) {unknown}; use 'md' and/or 'html'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    ok = runs.loc[runs["status"] == "ok"] if "status" in runs else runs.iloc[0:0]
    has_ok = not ok.empty and metric in runs.columns
    has_ref = has_ok and _with_reference(runs, reference, metric)
    order = _strategy_order(runs, metric, reference) if has_ok else sorted(map(str, runs["strategy"].unique()))

    headers = _headers(reference, metric)
    blocks: list[_Block] = [_Block("h1", title)]
    blocks += _setup_block(runs, reference, metric, alpha)
    draw = extra_installed("plot")  # the tables need no plotting library; the plots do
    if not draw:
        blocks.append(_Block("p", 'Plots are not drawn: they need matplotlib and scikit-posthocs '
                                  '(pip install "metalearn-al[plot]").'))

    diffs = overall = overall_by = None
    ranks = rank_table(runs, metric) if has_ok else None
    if has_ok:
        blocks.append(_Block("h2", "Overall comparison"))
        if has_ref:
            diffs = paired_differences(runs, reference, metric, alpha=alpha)
            overall = overall_comparison(runs, reference, metric, alpha=alpha, differences=diffs)
            overall_by = overall_comparison(runs, reference, metric, alpha=alpha, by=SETTING_KEYS, differences=diffs)
            text = (
                f"Over all problems, best mean rank first. `diff. to {reference}`: mean over problems of the "
                "per-problem paired mean difference (points); W/T/L: problems won, tied and lost; p: Wilcoxon "
                "signed-rank test of the per-problem differences; p (Holm): the same p-values Holm-corrected over "
                f"the comparisons with {reference} (pairwise Wilcoxon tests against a control, as scikit-posthocs "
                "and autorank report them)."
            )
            if "gap_closed" in overall:
                text += (
                    " Gap closed: mean(strategy - random) / mean(oracle - random) over the runs with an oracle run "
                    "(1 = as good as the greedy look-ahead oracle, 0 = random; a ratio of means, so a problem where "
                    "the oracle barely beats random cannot swing it)."
                )
            blocks += [_Block("p", text), _Block("table", _overall_table(overall, reference), headers=headers)]
        else:
            blocks += [
                _Block("p", f"The reference `{reference}` has no successful run: only ranks are shown."),
                _Block("table", mean_ranks(runs, metric), headers=headers),
            ]
        fr = friedman_test(runs, metric, alpha=alpha)
        if not math.isnan(fr.p_value):
            blocks.append(
                _Block(
                    "p",
                    f"Friedman test over {fr.n_problems} complete problems and {fr.n_strategies} strategies: "
                    f"chi2 = {fr.statistic:.2f}, p {_format_p(fr.p_value)}. Nemenyi critical difference of mean ranks "
                    f"(alpha = {alpha:g}): {fr.critical_difference:.2f}.",
                )
            )
        if draw:
            cd_path = plot_critical_difference(
                fr,
                out / "critical_difference.png",
                reference=reference,
                fallback_ranks=mean_ranks(runs, metric).set_index("strategy")["mean_rank"],
            )
            written["critical_difference"] = cd_path
            blocks.append(_Block("img", cd_path, "critical difference diagram"))

        blocks.append(_Block("h2", "Strategies (pooled over all runs)"))
        blocks.append(
            _Block(
                "p",
                "Means over all successful runs (points); labels to 98%: median labels bought until the test "
                "score first reached 98% of the full-pool model's, among runs that reached it; query ms: mean "
                "wall time of one query.",
            )
        )
        blocks.append(_Block("table", strategy_summary(runs, metric), headers=headers))

        if diffs is not None and not diffs.empty and draw:
            blocks.append(_Block("h2", f"Differences to {reference} per problem"))
            problems = diffs[list(PROBLEM_KEYS)].drop_duplicates()
            panels = [s for s in order if s != reference]
            if len(problems) <= _MAX_PROBLEMS_PER_FIGURE:
                p = plot_differences(diffs, out / "differences.png", reference=reference, strategies=panels)
                written[p.stem] = p
                blocks.append(_Block("img", p, f"differences to {reference}"))
            else:
                for setting, part in diffs.groupby(list(SETTING_KEYS), sort=True):
                    p = plot_differences(
                        part,
                        out / f"differences_{_slug(setting[0], setting[1], f'b{setting[2]}')}.png",
                        reference=reference,
                        strategies=panels,
                        title=f"Mean difference to {reference}: {_setting_label(*setting)}",
                    )
                    written[p.stem] = p
                    blocks.append(_Block("img", p, f"differences to {reference}, {_setting_label(*setting)}"))

    score = "macro_f1" if "macro_f1" in metric else "accuracy"
    curve_paths: dict[tuple[Any, ...], Path] = {}
    if curves is not None and not curves.empty and draw:
        curve_rows = curves
        if "run_id" in curves.columns and "run_id" in runs.columns:
            curve_rows = curves.loc[curves["run_id"].isin(set(ok["run_id"]))]
        for p in plot_learning_curves(curve_rows, out, reference=reference, score=score, strategies=order):
            written[p.stem] = p
        for setting in curve_rows[list(SETTING_KEYS)].drop_duplicates().itertuples(index=False):
            curve_paths[tuple(setting)] = out / f"curves_{_slug(setting[0], setting[1], f'b{setting[2]}')}.png"

    if has_ok and has_compute(runs):  # results stored before compute was recorded keep their report
        blocks += _compute_blocks(runs, metric, reference, order, out, written if draw else None)

    settings = sorted(
        {tuple(s) for s in runs[list(SETTING_KEYS)].drop_duplicates().itertuples(index=False)},
        key=lambda s: tuple(str(v) if not isinstance(v, (int, np.integer)) else f"{int(v):012d}" for v in s),
    )
    if settings:
        blocks.append(_Block("h2", "Per setting"))
        if has_ref:
            blocks.append(
                _Block(
                    "p",
                    f"Per setting, over its datasets; dataset columns: mean paired difference to `{reference}` "
                    "across seeds (points), W = significant win, L = significant loss.",
                )
            )
        elif has_ok:
            blocks.append(_Block("p", "Per setting: mean rank and mean score per dataset (points)."))
    for setting in settings:
        blocks.append(_Block("h3", _setting_label(*setting)))
        if ranks is not None and not ranks.empty:
            table = _setting_table(diffs, overall_by, ranks, setting, reference)
            if not table.empty:
                blocks.append(_Block("table", table, headers=headers))
            else:
                blocks.append(_Block("p", "No successful run."))
        path = curve_paths.get(setting)
        if path is not None and _output_exists(path):
            blocks.append(_Block("img", path, f"learning curves, {_setting_label(*setting)}"))

    failed = failed_runs(runs)
    blocks.append(_Block("h2", f"Failed runs ({len(failed)})"))
    if failed.empty:
        blocks.append(_Block("p", "None: every run finished."))
    else:
        blocks.append(
            _Block("p", "Excluded from every statistic above (never scored as zero); the paired seeds of the "
                        "other strategies are unaffected, but differences need both runs of a pair.")
        )
        blocks.append(_Block("table", failed))

    if "md" in formats:
        written["md"] = out / "report.md"
        _write_output(written["md"], _render_markdown(blocks, out).encode("utf-8"))
    if "html" in formats:
        written["html"] = out / "report.html"
        _write_output(written["html"], _render_html(blocks, title).encode("utf-8"))
    return written
