"""The ``--dask`` address: parsed and checked once, before any work starts.

Accepted: ``local`` (a local cluster, one worker per core), ``local:N`` (N worker processes,
1 <= N <= :data:`MAX_LOCAL_WORKERS`), or a scheduler address ``SCHEME://HOST[:PORT]`` (schemes
of :data:`SCHEMES`) or ``HOST:PORT``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from metalearn.common.text import printable
from metalearn.exceptions import InvalidInputError, InvalidTypeError

__all__ = ["DaskAddress", "parse_dask_address", "dask_address_argument", "MAX_LOCAL_WORKERS", "SCHEMES"]

#: Most worker processes ``local:N`` starts (each is a Python process with its own memory).
MAX_LOCAL_WORKERS = 1024
#: Communication protocols of a Dask scheduler address.
SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)"
_SCHEDULER = re.compile(rf"^(?:(?P<scheme>[a-z]+)://)?(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?/?$")


@dataclass(frozen=True)
class DaskAddress:
    """A checked ``--dask`` address.

    Attributes
    ----------
    text : str
        The address as given.
    local_workers : int or None
        Worker processes of a local cluster (None: one per core); meaningful if ``is_local``.
    is_local : bool
        Start a local cluster instead of connecting to a scheduler.
    """

    text: str
    is_local: bool
    local_workers: int | None = None


def parse_dask_address(text: object) -> DaskAddress:
    """Check a ``--dask`` address.

    Raises
    ------
    InvalidTypeError
        ``text`` is not a string.
    InvalidInputError
        ``local:N`` with N not an integer in [1, MAX_LOCAL_WORKERS], or not a scheduler address.
    """
    if not isinstance(text, str):
        raise InvalidTypeError(f"a Dask address must be a string, got {type(text).__name__}")
    expected = (
        f"expected 'local', 'local:N' (1 <= N <= {MAX_LOCAL_WORKERS}) or a scheduler address such as "
        "'tcp://host:8786'"
    )
    if text == "local" or text.startswith("local:"):
        _, _, workers = text.partition(":")
        if not workers:
            return DaskAddress(text, True, None)
        if not workers.isascii() or not workers.isdigit() or not 1 <= int(workers) <= MAX_LOCAL_WORKERS:
            raise InvalidInputError(f"Dask address {printable(text)!r}: {expected}")
        return DaskAddress(text, True, int(workers))
    match = _SCHEDULER.match(text) if len(text) <= 300 else None
    if match is None:
        raise InvalidInputError(f"Dask address {printable(text[:300])!r}: {expected}")
    scheme, port = match.group("scheme"), match.group("port")
    if scheme is None and port is None:  # a bare word such as 'bogus' is no address
        raise InvalidInputError(f"Dask address {printable(text)!r}: a scheduler address needs a port; {expected}")
    if scheme is not None and scheme not in SCHEMES:
        raise InvalidInputError(f"Dask address {printable(text)!r}: unknown protocol {scheme!r} (one of {', '.join(SCHEMES)})")
    if port is not None and not 1 <= int(port) <= 65535:
        raise InvalidInputError(f"Dask address {printable(text)!r}: port {port} is not in 1..65535")
    return DaskAddress(text, False, None)


def dask_address_argument(text: str) -> str:
    """``argparse`` type of ``--dask``: the address if valid, else a usage error (exit status 2)."""
    try:
        return parse_dask_address(text).text
    except (InvalidInputError, InvalidTypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
