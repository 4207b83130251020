"""The SQLite schema as numbered migrations, and the code that brings a database up to date.

Migration ``n`` (1-based) is ``MIGRATIONS[n - 1]``. To change the schema, append a migration;
never edit one that has shipped. The version reached is kept in the one-row table
``schema_version``.
"""

from __future__ import annotations

import sqlite3

from chatgate.errors import StoreError

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE claims (
            dedup_key  TEXT PRIMARY KEY,
            answer_id  TEXT NOT NULL,
            expires_at REAL NOT NULL
        )
        """,
        "CREATE INDEX claims_answer ON claims (answer_id)",
        "CREATE INDEX claims_expiry ON claims (expires_at)",
        # ``seq`` is the rowid; AUTOINCREMENT keeps it growing even after deletes.
        """
        CREATE TABLE answers (
            seq            INTEGER PRIMARY KEY AUTOINCREMENT,
            id             TEXT NOT NULL UNIQUE,
            conversation   TEXT NOT NULL,
            dedup_key      TEXT NOT NULL,
            kind           TEXT NOT NULL,
            question       TEXT NOT NULL,
            page_token     TEXT NOT NULL UNIQUE,
            status         TEXT NOT NULL,
            text           TEXT NOT NULL,
            error          TEXT,
            created_at     REAL NOT NULL,
            updated_at     REAL NOT NULL,
            finished_at    REAL,
            expires_at     REAL,
            delivered_upto INTEGER NOT NULL,
            meta           TEXT NOT NULL
        )
        """,
        "CREATE INDEX answers_conversation ON answers (conversation, seq)",
        "CREATE INDEX answers_unfinished ON answers (seq) WHERE status IN ('queued', 'running')",
        "CREATE INDEX answers_expiry ON answers (expires_at) WHERE expires_at IS NOT NULL",
        """
        CREATE TABLE turns (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation TEXT NOT NULL,
            role         TEXT NOT NULL,
            content      TEXT NOT NULL,
            at           REAL NOT NULL,
            answer_id    TEXT
        )
        """,
        "CREATE INDEX turns_conversation ON turns (conversation, id)",
        # The id of the last turn before the context was reset: later turns form the context.
        """
        CREATE TABLE context_resets (
            conversation TEXT PRIMARY KEY,
            after_turn   INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE kv (
            key        TEXT PRIMARY KEY,
            value      TEXT NOT NULL,
            expires_at REAL
        )
        """,
        "CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL",
        """
        CREATE TABLE locks (
            name       TEXT PRIMARY KEY,
            owner      TEXT NOT NULL,
            expires_at REAL NOT NULL
        )
        """,
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema in one transaction; safe when processes race to do it."""
    # IMMEDIATE takes the write lock before reading the version, so a second process opening
    # the same new file waits here and then finds the schema already in place.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
        )
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        current = int(rows[0][0]) if rows else 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {current}, newer than this chatgate's "
                f"{SCHEMA_VERSION}: upgrade chatgate"
            )
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version (id, version) VALUES (1, ?)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            (SCHEMA_VERSION,),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
