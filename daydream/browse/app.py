"""Browsing: Datasette over a daydream database, read-only, described for researchers.

The views (``projections/views.py``) are plain SQL stored in the database, so ``datasette daydream.db``
and ``sqlite3`` see the same tables and views. daydream's Datasette plugin (``hooks``,
an entry point, so plain ``datasette daydream.db`` has it too) adds what only Datasette can
use: table and column descriptions, facets, sort orders, label columns, hidden internal
tables, canned queries (``queries``: a cohort's top essays, scores and failures; a
generation's lineage with its texts), texts rendered whole in ``<pre>``-like blocks,
generation, combination and cohort ids rendered as links, and its own pages (``pages``: a
generation, the comparison matrix, a cohort's pivot). ``daydream browse`` (``serve``)
adds a title and its settings.

Invariants:

- ``daydream browse`` answers only requests whose Host header is loopback (``guard``).
- The browser never writes. The database is opened as a mutable file, so every read
  connection is ``mode=ro`` and sees what workers commit (``immutable`` would let SQLite
  skip locking and read torn pages while workers write); no canned query is a write
  query; and every connection Datasette opens to it runs ``PRAGMA query_only``, so even
  Datasette's own write connection cannot change it.
- The hooks act only on daydream databases: any other database in the same Datasette,
  or in another, is untouched.
"""

from __future__ import annotations

import errno
import socket
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from datasette.app import Datasette

from daydream.browse.guard import loopback_only
from daydream.browse.hooks import ensure_registered
from daydream.browse.metadata import instance_metadata
from daydream.browse.pages import TEMPLATES
from daydream.db.connection import connect, missing_database
from daydream.errors import ConfigError, StoreError

# Datasette settings for `daydream browse`. Facet suggestions run one query per column
# and make every view page scan its view several times, so only declared facets run;
# score views over a large cohort take longer than Datasette's default 1 s limit.
SETTINGS: dict[str, Any] = {
    "suggest_facets": False,
    "sql_time_limit_ms": 5000,
    "facet_time_limit_ms": 500,
    "allow_download": False,
}


def make_datasette(
    db_path: str | Path,
    *,
    settings: dict[str, Any] | None = None,
    count_up_to: int | None = None,
) -> Datasette:
    """A read-only Datasette for ``db_path``, with daydream's hooks and settings; the pages
    of tables and views that grow with the cohorts count their rows while the database
    holds at most ``count_up_to`` generations (``uncounted``: 25,000 by default)."""
    path = Path(db_path).absolute()  # not resolved: a plain link to an awkward path works
    if not path.is_file():
        raise missing_database(db_path)
    if any(char in str(path) for char in "#?%"):
        # Datasette opens f"file:{path}?..." unescaped: SQLite would cut the name at '#' or
        # '?' (and create an empty file there) or decode '%xx', and show no tables.
        raise StoreError(
            f"database {db_path}: Datasette cannot open a path containing '#', '?' or '%';"
            f" link it from a plain path (ln -s '{path}' /tmp/daydream.db) and browse that"
        )
    ensure_registered()
    return Datasette(
        [str(path)],
        metadata=instance_metadata(database_name(path), count_up_to=count_up_to),
        settings={**SETTINGS, **(settings or {})},
        # query.html: the next-page link of the paged canned queries (queries.PAGED)
        template_dir=str(TEMPLATES),
    )


def serve(
    db_path: str | Path,
    *,
    port: int = 8001,
    host: str = "127.0.0.1",
    open_browser: bool = False,
    count_up_to: int | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Serve ``db_path`` read-only on ``host:port`` until interrupted.

    The database is first opened once the way every daydream command opens it (so
    migrations and views are current); from then on nothing writes to it.
    """
    connect(db_path, create=False).close()
    ds = make_datasette(db_path, count_up_to=count_up_to)
    sock = listening_socket(host, port)
    url = f"http://{host}:{port}/"
    log(f"serving {db_path} read-only at {url} (Ctrl-C stops)")
    if open_browser:
        webbrowser.open(url)
    config = uvicorn.Config(
        loopback_only(ds.app()),  # a page on a rebinding domain gets nothing (guard.py)
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket to serve on, bound here so a busy port is one clear line (uvicorn would
    log a traceback-like error and exit)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not a listening one
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use (another daydream browse or datasette?);"
                f" choose another with --port {port + 1 if port < 65535 else 8001}"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    return sock


def database_name(db_path: str | Path) -> str:
    """The name Datasette gives the database: its file name without the suffix."""
    return Path(db_path).stem
