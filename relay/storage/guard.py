"""Keeping the bridge's SQLite file trustworthy (no trio): private at rest, sound at start, the same file while
the bridge runs.

* **At rest** the file holds message text. :func:`prepare` creates the store's folder 0700 (:data:`FOLDER_MODE`)
  and the file 0600 (:data:`relay.storage.sqlite.FILE_MODE`; SQLite gives its ``-wal`` and ``-shm`` the file's
  mode), and tightens existing files that are looser (the store, ``-wal``, ``-shm``, and files the caller names,
  such as saved session data), each with a WARNING. An existing folder that others may read is only reported:
  the store path is configurable, and its folder may be one the user shares (the files in it are private
  anyway). :func:`private_folder` does the same for folders of other private data, and :func:`private_umask`
  makes whatever else the process creates private too (the composition root calls it at start).
* **At start**, :func:`quick_check` runs SQLite's ``PRAGMA quick_check`` for at most
  :data:`QUICK_CHECK_SECONDS`. It reads every page once (about 0.2 s for a 250 MB file from the page cache on the
  2-core test machine), so a store within the default bounds is checked in full; a larger store or a slow disk
  is checked in part, which is logged. The bound keeps a restart after a crash, which must resume within
  Discord's window, from waiting on a large file; ``discord-mirai-relay store check`` checks everything. A damaged
  file stops the bridge before it issues ids from it (``store repair`` salvages it).
* **While running**, :class:`StoreGuard` compares the file, its ``-wal`` and its ``-shm`` with the ones the
  bridge opened (device and inode) and checks that they still exist. A store deleted or replaced under the
  bridge would make it forget what it issued and issue the same ids again, so :meth:`StoreGuard.check` raises
  :class:`~relay.errors.StoreLost`, which stops the bridge; the flusher calls it every
  :data:`relay.storage.flushers.GUARD_INTERVAL`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import attrs

from relay.errors import StoreError, StoreLost
from relay.storage import salvage, sqlite

log = logging.getLogger(__name__)

#: the mode of the folders the bridge creates for its private data
FOLDER_MODE: Final = 0o700
#: seconds the start-up integrity check may take (see the module docstring)
QUICK_CHECK_SECONDS: Final = 2.0
#: SQLite virtual-machine steps between looks at the check's deadline
_PROGRESS_STEPS: Final = 10_000
#: problems quoted from a failed check
_PROBLEMS_QUOTED: Final = 5


def companions(path: str) -> tuple[str, str]:
    """The ``-wal`` and ``-shm`` files SQLite keeps beside ``path`` in WAL mode."""
    return path + "-wal", path + "-shm"


def private_umask() -> int:
    """Make every file and folder the process creates from now on private to its user (umask 077 added to the
    current one): the bridge's session data and uploads as much as its store. Returns the previous umask."""
    previous = os.umask(0o077)
    os.umask(previous | 0o077)
    return previous


def private_folder(folder: Path, *, holding: str) -> None:
    """Create ``folder`` (and its parents) with :data:`FOLDER_MODE`, or report at WARNING an existing one others can
    read. Raises :class:`StoreError` when it cannot be created (``holding`` says what for: "the store 'x'")."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
        mode = stat.S_IMODE(folder.stat().st_mode)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder of {holding}: {exc.strerror or exc}; set [store] path (or --store-path) to a "
            "writable location"
        ) from None
    if mode & 0o077:
        log.warning(
            "the folder %s is open to other users (mode %04o); the bridge's files in it are private (0600), but "
            "`chmod 700 %s` would hide their names too",
            folder,
            mode,
            folder,
        )


def tighten(paths: Iterable[str]) -> None:
    """Make every existing file of ``paths`` that others may read or write 0600, with a WARNING each."""
    for path in paths:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot check the permissions of %s: %s", path, exc.strerror or exc)
            continue
        if mode & 0o077:
            try:
                os.chmod(path, sqlite.FILE_MODE)
            except OSError as exc:
                log.warning("%s is open to other users (mode %04o) and cannot be made private: %s", path, mode, exc)
                continue
            log.warning("%s was open to other users (mode %04o): made it 0600, it holds message text", path, mode)


@attrs.frozen
class QuickCheck:
    """The outcome of :func:`quick_check`: ``problems`` (empty when none was found) and whether the whole file was
    checked within the time bound."""

    problems: tuple[str, ...]
    complete: bool


def quick_check(path: str, seconds: float = QUICK_CHECK_SECONDS) -> QuickCheck:
    """``PRAGMA quick_check`` of the SQLite file ``path``, stopped after ``seconds``.

    Raises :class:`StoreError` when the file cannot be opened at all.
    """
    try:
        db = sqlite.connect(path, cache_kib=sqlite.OUTBOX_READER_CACHE_KIB, read_only=True)
    except sqlite3.Error as exc:
        if salvage.is_damage(exc):  # not a database at all
            return QuickCheck((str(exc),), complete=True)
        raise StoreError(f"cannot open the store {path!r}: {exc}; check the path and permissions") from exc
    deadline = time.monotonic() + seconds
    db.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
    try:
        rows = db.execute(f"PRAGMA quick_check({_PROBLEMS_QUOTED})").fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupt" in str(exc):
            return QuickCheck((), complete=False)
        return QuickCheck((str(exc),), complete=True)
    except sqlite3.DatabaseError as exc:  # e.g. a page header so damaged that the check itself gives up
        return QuickCheck((str(exc),), complete=True)
    finally:
        db.close()
    problems = tuple(str(row[0]) for row in rows if row[0] != "ok")
    return QuickCheck(problems, complete=True)


_Identity = tuple[int, int]


def _identity(path: str) -> _Identity | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


@attrs.define
class StoreGuard:
    """Tells whether the store's files are still the ones the bridge opened (see the module docstring)."""

    path: str
    #: file → (device, inode) when first seen
    _seen: dict[str, _Identity] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self._note(self.path)

    def _note(self, path: str) -> _Identity | None:
        identity = _identity(path)
        if identity is not None:
            self._seen.setdefault(path, identity)
        return identity

    def check(self) -> None:
        """Raise :class:`StoreLost` when the store file, its ``-wal`` or its ``-shm`` was deleted or replaced."""
        for path in (self.path, *companions(self.path)):
            known = self._seen.get(path)
            try:
                current = _identity(path)
            except OSError as exc:
                log.warning("cannot check the store file %s: %s", path, exc.strerror or exc)
                continue
            if known is None:
                if current is not None:
                    self._seen[path] = current  # SQLite creates -wal and -shm with its first transaction
                continue
            if current == known:
                continue
            what = "deleted" if current is None else "replaced by another file"
            raise StoreLost(
                f"the store file {path} was {what} while the bridge was running: stopping rather than issue "
                "message ids it has already issued. Restore the file, or start again with a new store (its ids "
                "start from the clock, away from the old ones)"
            )


def prepare(path: str, *, also_private: Iterable[str] = (), check_seconds: float = QUICK_CHECK_SECONDS) -> StoreGuard:
    """Before the store opens ``path``: its folder and files private (see the module docstring; ``also_private``:
    more files of the bridge's to tighten), the file created if missing, and the start-up integrity check.

    Raises :class:`StoreLost` when the check finds damage, :class:`StoreError` when the folder or file cannot be
    made. Returns the guard the flusher checks the files with.
    """
    private_folder(Path(path).parent, holding=f"the store {path!r}")
    tighten((path, *companions(path), *also_private))
    sqlite.create_private(path)
    if not os.path.exists(path):
        raise StoreError(f"cannot create the store {path!r}; check the path and permissions")
    started = time.monotonic()
    result = quick_check(path, check_seconds)
    if result.problems:
        raise StoreLost(
            f"the store {path} is damaged ({'; '.join(result.problems[:_PROBLEMS_QUOTED])}): not starting, so that "
            "no message id is issued twice. With the bridge stopped, `discord-mirai-relay store repair` salvages "
            "every readable row into a fresh file and keeps the damaged one beside it"
        )
    if not result.complete:
        log.warning(
            "integrity check of %s stopped after %.1f s (a large store or a slow disk); `discord-mirai-relay store "
            "check` checks all of it",
            path,
            check_seconds,
        )
    else:
        log.debug("integrity check of %s: ok in %.2f s", path, time.monotonic() - started)
    return StoreGuard(path)
