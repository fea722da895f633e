"""Where a database's bytes go, with realistic texts: bytes per generation, split into the
log, the stored prompts, the replies and parsed texts, the full-text index, the other
projection tables and the indexes (SQLite's ``dbstat`` virtual table: the pages of each
table and index). The ``texts`` table holds prompts and replies alike; its pages are split
between them by their bytes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from browse_build import build


def measure_sizes(db: Path, generations: int) -> dict:
    """Build a cohort of about ``generations`` with realistic texts at ``db`` (unless it
    exists) and measure where its bytes go."""
    from daydream.db.connection import connect

    built = None
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        built = build(db, generations, realistic=True, log=lambda line: None)
    connect(db, create=False).close()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = breakdown(conn)
    finally:
        conn.close()
    out["build_s"] = built
    out["file_bytes"] = db.stat().st_size
    return out


def breakdown(conn: sqlite3.Connection) -> dict:
    n = conn.execute("SELECT count(*) FROM generations").fetchone()[0]
    kinds = dict(conn.execute("SELECT name, type FROM sqlite_schema"))
    parts: dict[str, int] = {}
    for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
        parts[_part(name, kinds.get(name))] = parts.get(_part(name, kinds.get(name)), 0) + size
    prompts, others = conn.execute(
        "SELECT sum(CASE WHEN p THEN b ELSE 0 END), sum(CASE WHEN p THEN 0 ELSE b END) FROM ("
        " SELECT length(CAST(t.text AS BLOB)) AS b,"
        "  EXISTS (SELECT 1 FROM generations g WHERE g.prompt_hash = t.hash) AS p FROM texts t)"
    ).fetchone()
    texts = parts.pop("texts", 0)
    share = (prompts or 0) / max(1, (prompts or 0) + (others or 0))
    parts["texts: prompts"] = round(texts * share)
    parts["texts: replies and parsed"] = texts - parts["texts: prompts"]
    return {
        "generations": n,
        "bytes": sum(parts.values()),
        "parts": dict(sorted(parts.items(), key=lambda item: -item[1])),
        "prompt_text_bytes": prompts or 0,
        "reply_text_bytes": others or 0,
    }


def _part(name: str, kind: str | None) -> str:
    if name == "texts":
        return "texts"
    if name == "events":
        return "events (the log)"
    if name.startswith("search_texts"):
        return "full-text index (search_texts*)"
    if kind == "index" or name.startswith("sqlite_autoindex"):
        return "indexes"
    if name.startswith("sqlite_"):
        return "other"
    return "projection tables"


def format_sizes(f: dict) -> str:
    n = f["generations"]
    lines = [
        f"realistic texts, {n:,} generations: {f['file_bytes']:,} bytes on disk,"
        f" {f['file_bytes'] / n:,.0f} bytes per generation"
        + (f" (built in {f['build_s']} s)" if f["build_s"] else ""),
        f"{'part':<36}{'bytes/generation':>18}{'share':>8}",
    ]
    for part, size in f["parts"].items():
        lines.append(f"{part:<36}{size / n:>18,.0f}{100 * size / f['bytes']:>7.1f}%")
    lines.append(
        f"text bytes: prompts {f['prompt_text_bytes'] / n:,.0f}, replies and parsed"
        f" {f['reply_text_bytes'] / n:,.0f} per generation"
    )
    return "\n".join(lines)
