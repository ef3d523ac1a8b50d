"""The workspace's file: where it lives, how it is opened, and its schema's migrations.

A review must survive a refresh, a closed tab and a server restart, and two
browsers must be able to work on one workspace, so it is an SQLite file in WAL
mode (readers never block the writer, a crash mid-write loses nothing that was
committed) with a ``busy_timeout`` (a second writer waits instead of failing)
and foreign keys on. The schema is versioned with ``PRAGMA user_version`` and
:data:`MIGRATIONS`, an ordered list: migration *n* takes a file from version
*n - 1* to *n*, each in its own transaction, so opening a file made by an older
florence-ui upgrades it and a crash mid-upgrade leaves the last good version.
A file newer than this code is refused rather than guessed at.

A file that cannot be written (its permissions, a read-only folder or
filesystem) is opened read-only instead (SQLite's ``mode=ro``, or
``immutable=1`` where not even the WAL's shared-memory file can be made), so a
labeller can still look and export; :class:`Store` says so and why, and the
workspace refuses every write with a sentence instead of an ``sqlite3`` error.

Where: ``$FLORENCE_UI_DATA/workspaces/<name>.sqlite3`` (default data folder:
``$XDG_DATA_HOME/florence-ui``, else ``~/.local/share/florence-ui``).
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from florence_ui.errors import WorkspaceError

#: the data-folder variable (the README's Configuration and Workspace sections name it)
DATA_ENV = "FLORENCE_UI_DATA"
#: a workspace name: it becomes a file name, so no separators, dots or spaces
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: how long a writer waits for another one (a second browser, the CLI) before giving up, in ms
BUSY_TIMEOUT_MS = 10_000

_V1 = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    identity TEXT NOT NULL UNIQUE,          -- core.images.image_identity: sha256 of the file's bytes
    name TEXT NOT NULL,
    path TEXT,                              -- the file, when it is kept where it is
    data BLOB,                              -- or its bytes, when there is no file to point at (an upload)
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    added TEXT NOT NULL
);
CREATE TABLE runs (                         -- one model answer: the results.jsonl contract's fields
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    text_input TEXT,
    boxes TEXT,                             -- JSON prompt boxes of region tasks
    raw TEXT NOT NULL,                      -- JSON: the generated text (a string, or one per box)
    text TEXT,
    text_score REAL,
    settings TEXT,                          -- JSON: max_new_tokens, num_beams
    model TEXT,
    revision TEXT,
    truncated INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    source_key TEXT UNIQUE                  -- set on import: the same results line is never imported twice
);
CREATE TABLE regions (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,   -- NULL: drawn by hand
    label TEXT NOT NULL,
    xyxy TEXT NOT NULL,                     -- JSON [x1, y1, x2, y2] in pixels
    polygons TEXT NOT NULL DEFAULT '[]',    -- JSON list of flat polygons
    quad TEXT,                              -- JSON flat OCR quadrilateral
    source_task TEXT NOT NULL,
    score REAL,
    box_index INTEGER,
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
    deleted INTEGER NOT NULL DEFAULT 0,     -- deletion is a state, so it can be undone
    version INTEGER NOT NULL DEFAULT 1      -- optimistic concurrency: every change adds one
);
CREATE TABLE events (                       -- every review action, for undo / redo and audit
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    changes TEXT NOT NULL,                  -- JSON [{"region": id, "before": {...}, "after": {...}}]
    state TEXT NOT NULL DEFAULT 'done' CHECK (state IN ('done', 'undone', 'dropped'))
);
CREATE TABLE labels (                       -- the label set: position is the class id in every export
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    synonyms TEXT NOT NULL DEFAULT '[]',
    position INTEGER NOT NULL UNIQUE
);
"""

#: v2: the queue's queries (status per image, filters, undo's "last done event") stay index lookups at 1,000s of images
_V2 = """
CREATE INDEX regions_by_image ON regions(image_id, deleted, status);
CREATE INDEX regions_by_label ON regions(label);
CREATE INDEX runs_by_image ON runs(image_id);
CREATE INDEX events_by_state ON events(state, id);
"""

#: v3: where a class came from (a person's label set narrows what the model may add), lazy thumbnails, and a change
#: counter that triggers keep (what a page polls to tell that another browser changed something)
_V3 = """
ALTER TABLE labels ADD COLUMN origin TEXT NOT NULL DEFAULT 'seen' CHECK (origin IN ('user', 'seen'));
CREATE TABLE thumbnails (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    size INTEGER NOT NULL,                  -- the longest side, in pixels
    data BLOB NOT NULL,                     -- JPEG bytes
    PRIMARY KEY (image_id, size)
);
CREATE TABLE changes (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT INTO changes (id, n) VALUES (1, 0);
""" + "".join(
    f"CREATE TRIGGER {table}_{op.lower()}_counted AFTER {op} ON {table} "
    "BEGIN UPDATE changes SET n = n + 1 WHERE id = 1; END;\n"
    for table in ("images", "runs", "regions", "events", "labels")
    for op in ("INSERT", "UPDATE", "DELETE")
)

Migration = str | Callable[[sqlite3.Connection], None]
#: the schema's history, oldest first; never edit one that shipped, append a new one
MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


def data_dir(env: dict[str, str] | None = None) -> Path:
    """The data folder: ``$FLORENCE_UI_DATA``, else the user's data dir (XDG) under ``florence-ui``."""
    env = os.environ if env is None else env
    if env.get(DATA_ENV):
        return Path(env[DATA_ENV]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "florence-ui"


def check_name(name: str) -> str:
    """A valid workspace name, or a :class:`WorkspaceError` saying what is allowed."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise WorkspaceError(
            f"Workspace name {name!r} cannot be used: use 1 to 64 letters, digits, '-' or '_' "
            "(it becomes the file name), e.g. 'street-photos'."
        )
    return name


def workspace_names(root: str | Path | None = None) -> list[str]:
    """The workspaces under the data folder (``root`` replaces it), by name: the page's picker, the CLI's hints."""
    folder = Path(root or data_dir()) / "workspaces"
    return sorted(p.stem for p in folder.glob("*.sqlite3") if NAME_RE.match(p.stem)) if folder.is_dir() else []


def workspace_path(name: str, root: str | Path | None = None) -> Path:
    """``<data>/workspaces/<name>.sqlite3`` (``root`` replaces the data folder)."""
    return Path(root or data_dir()) / "workspaces" / f"{check_name(name)}.sqlite3"


@dataclass
class Store:
    """An open workspace file: its connection, and whether (and why) it is read-only."""

    conn: sqlite3.Connection
    readonly: bool = False
    #: why it is read-only, as a sentence ("its folder is not writable"); None when writable
    reason: str | None = None


def connect(path: str | Path, migrations: Sequence[Migration] = MIGRATIONS, *, readonly: bool = False,
            busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:  # fmt: skip
    """Open (creating if need be) a workspace file, configured and migrated to ``len(migrations)``.

    Autocommit mode (``isolation_level=None``): the workspace opens its own
    ``BEGIN IMMEDIATE`` transactions, so a write takes the lock before it reads
    what it will change. Shared across the page's worker threads (the
    :class:`~florence_ui.workspace.Workspace` serialises its calls). See
    :func:`open_store` for the read-only fallback.
    """
    return open_store(path, migrations, readonly=readonly, busy_timeout_ms=busy_timeout_ms).conn


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written, checked up front (``access`` also sees a read-only filesystem), else None."""
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is not writable"
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        return "its folder is not writable (SQLite needs it for the write-ahead log)"
    return None


def is_readonly_error(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly" in str(exc)


def is_busy_error(exc: sqlite3.Error) -> bool:
    """Another connection holds the write lock (``SQLITE_BUSY`` / "database is locked")."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def open_store(path: str | Path, migrations: Sequence[Migration] = MIGRATIONS, *, readonly: bool = False,
               busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Store:  # fmt: skip
    """Open a workspace file for writing, or read-only when asked or when it cannot be written.

    Read-only (``readonly=True``, or the file / its folder / its filesystem not
    writable) needs an existing file at the current schema version: an older
    one cannot be upgraded without writing, so it is refused with what to do.
    A damaged file and a file from a newer florence-ui are refused either way.
    """
    path = Path(path)
    reason = "it was opened read-only" if readonly else _unwritable(path)
    if reason is None:
        try:
            return Store(_open_writable(path, migrations, busy_timeout_ms))
        except _ReadOnly as exc:
            reason = str(exc)
    if not path.is_file():
        raise WorkspaceError(
            f"Cannot open the workspace file {path}: it does not exist and cannot be created ({reason}). "
            f"Set {DATA_ENV} to a writable folder, or open an existing workspace."
        )
    return Store(_open_readonly(path, migrations, busy_timeout_ms, reason), readonly=True, reason=reason)


class _ReadOnly(WorkspaceError):
    """Raised inside :func:`open_store` when SQLite finds the file unwritable only once it tries (caught there:
    the file is then opened read-only; a WorkspaceError so that the package keeps one exception tree)."""


def _damaged(path: Path, exc: Exception) -> WorkspaceError:
    return WorkspaceError(
        f"{path} is not a usable workspace file ({exc}): it is damaged or not a florence-ui workspace. "
        f"Move it aside and open the workspace again to start afresh, or set {DATA_ENV} to another folder."
    )


def _configure(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")


def _open_writable(path: Path, migrations: Sequence[Migration], busy_timeout_ms: int) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    except (OSError, sqlite3.Error) as exc:
        if path.is_file():
            raise _ReadOnly(f"SQLite could not open it for writing ({exc})") from exc
        raise WorkspaceError(
            f"Cannot open the workspace file {path} ({exc}); check that its folder is writable "
            f"or set {DATA_ENV} to a folder that is."
        ) from exc
    try:
        _configure(conn, busy_timeout_ms)
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn, migrations, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if isinstance(exc, sqlite3.OperationalError) and is_readonly_error(exc) and path.is_file():
            raise _ReadOnly(f"SQLite cannot write it ({exc})") from exc
        if isinstance(exc, sqlite3.OperationalError) and is_busy_error(exc):
            raise WorkspaceError(
                f"The workspace file {path} is locked by another program ({exc}) and needs a moment of writing to be "
                "opened (its schema is being upgraded); try again, or close the other florence-ui using it."
            ) from exc
        raise _damaged(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _open_readonly(path: Path, migrations: Sequence[Migration], busy_timeout_ms: int, reason: str
                   ) -> sqlite3.Connection:  # fmt: skip
    """``mode=ro``; where even that fails (no WAL index can be made), ``immutable=1``: a snapshot nobody writes."""
    last: Exception | None = None
    for query in ("mode=ro", "mode=ro&immutable=1"):
        conn = None
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, isolation_level=None,
                                   check_same_thread=False, timeout=busy_timeout_ms / 1000)  # fmt: skip
            _configure(conn, busy_timeout_ms)
            current, known = schema_version(conn), len(migrations)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.OperationalError) and is_readonly_error(exc):
                last = exc
                continue
            raise _damaged(path, exc) from exc
        if current > known:
            conn.close()
            migrate_refusal(path, current, known)
        if current < known:
            conn.close()
            raise WorkspaceError(
                f"The workspace file {path} has schema version {current} and must be upgraded to {known} before "
                f"this florence-ui can read it, but it is read-only ({reason}). Open it once where it is writable, "
                f"or copy it to a writable folder and set {DATA_ENV} there."
            )
        return conn
    raise WorkspaceError(f"Cannot open the workspace file {path} even read-only ({last}); check its permissions.")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, path: object = "") -> int:
    """Apply the migrations this file lacks, each in one transaction; returns the file's version after.

    A file whose version is above ``len(migrations)`` was written by a newer
    florence-ui: it is refused, never downgraded or half-read.
    """
    known = len(migrations)
    current = schema_version(conn)
    if current > known:
        migrate_refusal(path, current, known)
    for number in range(current + 1, known + 1):
        step = migrations[number - 1]
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= number:  # another process upgraded it while we waited for the lock
                conn.execute("COMMIT")
                continue
            if isinstance(step, str):
                for statement in _statements(step):
                    conn.execute(statement)
            else:
                step(conn)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return schema_version(conn)


def migrate_refusal(path: object, current: int, known: int) -> None:
    """Refuse a file written by a newer florence-ui (raises)."""
    raise WorkspaceError(
        f"The workspace file {path} has schema version {current}, newer than this florence-ui knows "
        f"({known}); upgrade florence-ui (pip install -U florence-ui) to open it."
    )


def _statements(script: str) -> list[str]:
    """A script's statements (``executescript`` would COMMIT first, outside our transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line.split("--", 1)[0].rstrip() + "\n" if "--" in line else line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
