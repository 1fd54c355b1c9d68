"""Names of released files: the folders searched and the resolver from a name to a file.

A policy (or a stopping rule, in the ``stopping/`` sub-folder of the same folders) is given
as a path or as a released name: ``<name>.safetensors`` in the package data of
``metalearn.policies.released`` (the same in a checkout and a wheel install), then in each
folder of ``$METALEARN_POLICY_DIR``; the first match wins. :func:`resolve_named_file` is the
one resolver both kinds use, and its docstring is the one place where the resolution order
is written down; :func:`looks_like_path` is the one test of "clearly a path".
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Callable
from pathlib import Path

from metalearn.common.text import printable
from metalearn.exceptions import MetalearnError, PolicyFileError, UnknownNameError

__all__ = [
    "POLICY_SUFFIX",
    "POLICY_DIR_ENV",
    "released_policy_dir",
    "policy_search_dirs",
    "names_in_folders",
    "released_policy_names",
    "resolve_policy_path",
    "resolve_named_file",
    "looks_like_path",
]

#: File name suffix of released policies and stopping rules.
POLICY_SUFFIX = ".safetensors"
#: Environment variable naming extra folders of named policies (``os.pathsep``-separated).
POLICY_DIR_ENV = "METALEARN_POLICY_DIR"
# The released policies: policies/ in the repository, package data of metalearn.policies.released (shipped in the wheel).
_RELEASED_PACKAGE = "metalearn.policies.released"


def released_policy_dir() -> Path:
    """The folder of the released policies inside the installed package (package data)."""
    return Path(str(importlib.resources.files(_RELEASED_PACKAGE)))


def policy_search_dirs() -> list[Path]:
    """Folders searched for named policies, first match wins.

    The released policies shipped in the package (:func:`released_policy_dir`, the same in a
    checkout and in a wheel install), then each folder of ``$METALEARN_POLICY_DIR``.
    """
    dirs = [released_policy_dir()]
    extra = os.environ.get(POLICY_DIR_ENV, "")
    dirs += [Path(part).expanduser() for part in extra.split(os.pathsep) if part.strip()]
    return dirs


def names_in_folders(folders: list[Path], suffix: str = POLICY_SUFFIX) -> list[str]:
    """Names (file names less ``suffix``) of the files in ``folders``, sorted, without duplicates.

    A folder that cannot be listed is skipped (the released files of policies and of stopping
    rules are found this way).
    """
    names: set[str] = set()
    for folder in folders:
        try:
            names.update(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}") if p.is_file())
        except OSError:
            continue
    return sorted(names)


def released_policy_names() -> list[str]:
    """Names of the policies found in :func:`policy_search_dirs`, sorted, without duplicates."""
    return names_in_folders(policy_search_dirs())



def looks_like_path(name_or_path: object, suffix: str = POLICY_SUFFIX) -> bool:
    """Whether an argument is clearly a path, never a released or strategy name.

    A path object (:class:`os.PathLike`), or text that holds a folder separator, starts with
    ``.`` or ``~``, or ends in ``suffix`` (``.safetensors``). See :func:`resolve_named_file`.
    """
    if isinstance(name_or_path, os.PathLike):
        return True
    if not isinstance(name_or_path, str):
        return False
    separators = {"/", os.sep, os.altsep or "/"}
    return (
        any(sep in name_or_path for sep in separators)
        or name_or_path.startswith((".", "~"))
        or name_or_path.endswith(suffix)
    )


def resolve_named_file(
    name_or_path: object,
    *,
    noun: str,
    label: str,
    error: type[MetalearnError],
    search_dirs: Callable[[], list[Path]],
    listing: Callable[[], str],
    suffix: str = POLICY_SUFFIX,
) -> Path:
    """The file a path or a released name refers to (policies and stopping rules alike).

    Resolution order, the first rule that applies wins (every entry point follows it:
    :func:`~metalearn.policies.format.read_policy` and ``load_policy``,
    :func:`~metalearn.stopping.load_stopping_rule`,
    :func:`~metalearn.strategies.resolve.resolve_strategy` and ``metalearn next-batch
    --policy/--stop-rule``):

    1. clearly a path (:func:`looks_like_path`: a path object, or text with a folder
       separator, starting with ``.`` or ``~``, or ending in ``suffix``): that path; a
       missing one is an ``error``;
    2. a released name: ``<name><suffix>`` in each of ``search_dirs()`` (the released files,
       then ``$METALEARN_POLICY_DIR``), the first match;
    3. an existing file of that name in the working directory (a file saved without the
       suffix);
    4. else :class:`UnknownNameError`, listing the released names.

    So a released name means the released file even when the working directory holds a
    file or folder of that name (``default/``): write ``./default`` for that one. The callers
    that also take a classic name (a querying strategy, a classic stopping criterion) check
    it before rule 2: a classic name that is not clearly a path is the classic one.

    Parameters
    ----------
    name_or_path : str or path-like
        A path or a released name, see the resolution order.
    noun : str
        What is named, in messages: ``"policy"``, ``"stopping rule"``.
    label : str
        The file kind's label, in messages: ``"policy file"``.
    error : type of MetalearnError
        Raised for an argument that is no name or path, and for a missing path.
    search_dirs : callable
        The folders searched for a name, called only when a name is looked up.
    listing : callable
        What is available ("released policies: a, b"), said when nothing matches.
    suffix : str

    Returns
    -------
    Path

    Raises
    ------
    UnknownNameError
        A name that matches no released file and no file in the working directory; the
        message holds ``listing()``.
    error
        A path (rule 1) that does not exist, a name the system cannot look up, or an argument
        that is neither a string nor a path.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise error(
            f"a {noun} is given as a file path or a released name, got {type(name_or_path).__name__} "
            f"{printable(repr(name_or_path)[:200])}"
        )
    text = os.fspath(name_or_path)
    if not isinstance(text, str):
        raise error(f"a {noun} is given as a file path or a released name, got the bytes path {text[:200]!r}")
    if not text.strip():
        raise error(f"empty {noun} name or path")
    if "\x00" in text:
        raise error(f"{noun} name or path {printable(text[:200])!r} contains a NUL character")
    path = Path(text).expanduser()
    if looks_like_path(name_or_path, suffix):
        if _exists(path, text, label, error):
            return path
        raise error(f"{label} {printable(text[:200])!r}: no such file; {listing()}")
    _exists(path, text, label, error)  # a name the system cannot look up (too long...) is an error
    for folder in search_dirs():
        candidate = folder / f"{text}{suffix}"
        if _exists(candidate, text, label, error) and candidate.is_file():
            return candidate
    if _exists(path, text, label, error) and path.is_file():
        return path
    raise UnknownNameError(
        f"unknown {noun} {printable(text[:200])!r}: neither a file nor a released {noun} name; {listing()}"
    )


def _exists(path: Path, text: str, label: str, error: type[MetalearnError]) -> bool:
    """Whether ``path`` exists; a name the system cannot look up (too long...) is an ``error``."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError) as exc:
        shown = text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
        reason = getattr(exc, "strerror", None) or exc
        raise error(f"{label} {printable(shown)!r}: cannot look it up ({reason})") from None
    return True


def _policy_listing() -> str:
    available = released_policy_names()
    if available:
        return f"released policies: {', '.join(available)}"
    return (
        "no released policies are installed yet (train one with metalearn train, or set "
        f"${POLICY_DIR_ENV} to a folder of *{POLICY_SUFFIX} files)"
    )


def resolve_policy_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The file a policy path or released name refers to.

    Parameters
    ----------
    name_or_path : str or path-like
        An existing path is returned as is. Otherwise a bare name (no folder separator) is
        looked up as ``<name>.safetensors`` in the released policies (package data), then in
        each folder of ``$METALEARN_POLICY_DIR`` (``os.pathsep``-separated); the first match wins.

    Returns
    -------
    Path

    Raises
    ------
    UnknownNameError
        A bare name that matches no released policy; the message lists the available names.
    PolicyFileError
        A path (with a folder separator or the ``.safetensors`` suffix) that does not exist.
    """
    from metalearn.policies.format import PolicyFile  # the format reads names: imported late

    if isinstance(name_or_path, PolicyFile):
        raise PolicyFileError("resolve_policy_path takes a path or a name, not a PolicyFile")
    return resolve_named_file(
        name_or_path, noun="policy", label="policy file", error=PolicyFileError,
        search_dirs=policy_search_dirs, listing=_policy_listing,
    )
