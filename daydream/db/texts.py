"""Texts stored once: prompts, replies and parsed outputs by content hash.

Events carry a text's hash (``text_hash``); the text itself is a row of ``texts``, written
once however many generations share it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable


def text_hash(text: str) -> str:
    return "b2:" + hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def put_text(conn: sqlite3.Connection, text: str) -> str:
    """Store a text once; returns its hash."""
    digest = text_hash(text)
    conn.execute(
        "INSERT OR IGNORE INTO texts (hash, text, length) VALUES (?, ?, ?)",
        (digest, text, len(text)),
    )
    return digest


def put_texts(conn: sqlite3.Connection, texts: Iterable[str]) -> list[str]:
    rows = [(text_hash(text), text, len(text)) for text in texts]
    conn.executemany("INSERT OR IGNORE INTO texts (hash, text, length) VALUES (?, ?, ?)", rows)
    return [row[0] for row in rows]


def put_hashed_texts(conn: sqlite3.Connection, items: Iterable[tuple[str, str]]) -> None:
    """Store texts whose hashes (``text_hash``) the caller already computed."""
    conn.executemany(
        "INSERT OR IGNORE INTO texts (hash, text, length) VALUES (?, ?, ?)",
        [(digest, text, len(text)) for digest, text in items],
    )


def get_text(conn: sqlite3.Connection, digest: str | None) -> str | None:
    if digest is None:
        return None
    row = conn.execute("SELECT text FROM texts WHERE hash = ?", (digest,)).fetchone()
    return row[0] if row else None
