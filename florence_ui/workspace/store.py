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

Where: ``$FLORENCE_UI_DATA/workspaces/<name>.sqlite3`` (default data folder:
``$XDG_DATA_HOME/florence-ui``, else ``~/.local/share/florence-ui``).
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Sequence
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

Migration = str | Callable[[sqlite3.Connection], None]
#: the schema's history, oldest first; never edit one that shipped, append a new one
MIGRATIONS: tuple[Migration, ...] = (_V1, _V2)
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


def workspace_path(name: str, root: str | Path | None = None) -> Path:
    """``<data>/workspaces/<name>.sqlite3`` (``root`` replaces the data folder)."""
    return Path(root or data_dir()) / "workspaces" / f"{check_name(name)}.sqlite3"


def connect(path: str | Path, migrations: Sequence[Migration] = MIGRATIONS) -> sqlite3.Connection:
    """Open (creating if need be) a workspace file, configured and migrated to ``len(migrations)``.

    Autocommit mode (``isolation_level=None``): the workspace opens its own
    ``BEGIN IMMEDIATE`` transactions, so a write takes the lock before it reads
    what it will change. Shared across the page's worker threads (the
    :class:`~florence_ui.workspace.Workspace` serialises its calls).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    except (OSError, sqlite3.Error) as exc:
        raise WorkspaceError(
            f"Cannot open the workspace file {path} ({exc}); check that its folder is writable "
            f"or set {DATA_ENV} to a folder that is."
        ) from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, migrations, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise WorkspaceError(
            f"{path} is not a usable workspace file ({exc}): it is damaged or not a florence-ui workspace. "
            f"Move it aside and open the workspace again to start afresh, or set {DATA_ENV} to another folder."
        ) from exc
    except WorkspaceError:
        conn.close()
        raise
    return conn


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
        raise WorkspaceError(
            f"The workspace file {path} has schema version {current}, newer than this florence-ui knows "
            f"({known}); upgrade florence-ui (pip install -U florence-ui) to open it."
        )
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
