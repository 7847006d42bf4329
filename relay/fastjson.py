"""JSON on the per-event paths: orjson when it can be imported, else the standard library.

orjson is a dependency (pip and pipx install it) and the hot paths use it: it parses a 1 KB gateway dispatch
about 3x and writes a frame about 10x faster than :mod:`json`. The single-file zipapp cannot load native
extensions (``scripts/build_zipapp.py`` leaves them out), so everything here also works without it, more
slowly. Every module that wants fast JSON goes through this one (a layering test checks).

Both forms agree on what the callers rely on:

* :func:`loads` raises :class:`ValueError` for what it does not parse. orjson is stricter than :mod:`json`
  (no NaN, no lone surrogate escapes, no byte order mark): callers that must accept everything json.loads
  accepts retry with it on ``ValueError``.
* :func:`dumps` writes compact UTF-8 JSON, non-ASCII unescaped, keys in insertion order, the same bytes as
  ``json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()`` for str/int/float/bool/None/list/
  tuple/dict data (orjson writes a NaN or infinite float as ``null``). It raises :class:`TypeError` for what it
  does not write: a string with a lone surrogate (no UTF-8 form), and with orjson an integer beyond 64 bits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

__all__ = ["HAVE_ORJSON", "dumps", "loads"]

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _stdlib_dumps(obj: Any) -> bytes:
    try:
        return _COMPACT.encode(obj).encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: the same refusal as orjson's
        raise TypeError(f"str is not valid UTF-8: {exc.reason}") from None


loads: Callable[[bytes | str], Any]
dumps: Callable[[Any], bytes]
try:
    import orjson
except ImportError:  # the zipapp (see the module docstring)
    orjson = None  # type: ignore[assignment]
    loads = json.loads
    dumps = _stdlib_dumps
else:
    loads = orjson.loads
    dumps = orjson.dumps

#: False in the zipapp, where the standard library does the work
HAVE_ORJSON: Final = orjson is not None
