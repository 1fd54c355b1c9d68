"""CSV tables that are safe to open in a spreadsheet: formula injection neutralised.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by
spreadsheet programs as a formula (a dataset named ``=cmd|' /C calc'!A0`` would run a command).
Every CSV metalearn writes goes through :func:`write_csv`, which prefixes such cells with a
single quote (OWASP's advice), so the spreadsheet shows them as text. Only text cells change:
numbers, including negative ones, stay numbers.

The escape is reversible, so a table metalearn reads back (``results.csv``) gives the names
it was written with: a cell that starts with quotes followed by a trigger character gets one
more quote on writing (:func:`neutralise_cell`) and loses one on reading
(:func:`restore_cell`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from metalearn.common.atomic import atomic_write

__all__ = ["FORMULA_TRIGGERS", "neutralise_cell", "restore_cell", "neutralise_formulas", "restore_formulas", "write_csv"]

#: First characters that make a spreadsheet evaluate a cell.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _needs_quote(text: str) -> bool:
    # Quotes before a trigger are escaped too, so that restoring is exact (a bijection).
    return text.lstrip("'").startswith(FORMULA_TRIGGERS)


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading quote if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and _needs_quote(value):
        return "'" + value
    return value


def restore_cell(value: Any) -> Any:
    """The inverse of :func:`neutralise_cell`: the cell as it was before writing."""
    if isinstance(value, str) and value.startswith("'") and _needs_quote(value[1:]):
        return value[1:]
    return value


def _text_columns(frame: pd.DataFrame) -> list[Any]:
    return [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c].dtype)]


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells are neutralised (numeric columns are untouched).

    The column names are text cells of the header row, so they are neutralised too.
    """
    out = frame.copy()
    for column in _text_columns(out):
        out[column] = out[column].map(neutralise_cell, na_action="ignore")
    if any(isinstance(c, str) and _needs_quote(c) for c in out.columns):
        out.columns = [neutralise_cell(c) for c in out.columns]
    return out


def restore_formulas(frame: pd.DataFrame, columns: Iterable[Any] | None = None) -> pd.DataFrame:
    """Undo :func:`neutralise_formulas` in place on the text ``columns`` (all text columns if None)."""
    if any(isinstance(c, str) and c.startswith("'") for c in frame.columns):
        frame.columns = [restore_cell(c) for c in frame.columns]
    chosen = _text_columns(frame) if columns is None else [c for c in columns if c in frame.columns]
    for column in chosen:
        frame[column] = frame[column].map(restore_cell, na_action="ignore")
    return frame


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str], **to_csv: Any) -> Path:
    """Write ``frame`` as CSV, atomically, with formula cells neutralised.

    Parameters
    ----------
    frame : pandas.DataFrame
    path : path
        The target; see :func:`metalearn.common.atomic.atomic_write` for what is refused.
    **to_csv
        Passed to :meth:`pandas.DataFrame.to_csv` (``index=False`` unless given).

    Returns
    -------
    Path
        ``path``.
    """
    to_csv.setdefault("index", False)
    safe = neutralise_formulas(frame)
    return atomic_write(path, lambda tmp: safe.to_csv(tmp, **to_csv))
