"""The browse tests' shared world: the demo cohort run end to end on the offline provider
(its five-point rubric fails where the offline judge answers off the scale) plus a
one-row cohort "extra" whose draft failed with a provider error, so its essay and
evaluation are blocked; and small helpers to ask Datasette's own client for a page."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from daydream import events as ev
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.demo import run_demo
from daydream.plan.write import plan_cohort

PROVIDER_ERROR = "HTTP 500 from offline: upstream exploded\n<html>trace</html>"
EXTRA_ROW = {
    "combo_id": "memory-codes",
    "draft_template": "free-notes",
    "draft_llm": "offline-large",
    "essay_template": "focused-essay",
    "essay_llm": "offline-large",
    "evaluation_template": "novelty-rubric",
    "evaluation_llm": "offline-small",
}
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)


def build_browse_db(path: Path) -> Path:
    """The demo plus the failed "extra" cohort, in ``path``."""
    run_demo(path, out=lambda _: None, err=lambda _: None)
    conn = connect(path)
    plan_cohort(conn, path.parent / "extra.yaml", "extra", rows=[EXTRA_ROW])
    [draft] = conn.execute(
        "SELECT g.gen_id FROM generations g JOIN cohort_members m USING (gen_id)"
        " WHERE m.cohort_id = 'extra' AND g.stage = 'draft'"
    ).fetchone()
    [token] = append(
        conn,
        [
            ev.AttemptStarted(
                gen_id=draft, attempt=1, worker="t", lease_expires_at="2030-01-01T00:00:00Z"
            )
        ],
        actor="test",
    )
    append(
        conn,
        [
            ev.AttemptFailed(
                gen_id=draft,
                token=token,
                state="provider_error",
                error=PROVIDER_ERROR,
                retryable=True,
                final=True,
                http_status=500,
            )
        ],
        actor="test",
    )
    conn.close()
    return path


def get(ds, path: str) -> httpx.Response:
    return asyncio.run(ds.client.get(path))


def rows(ds, path: str) -> list[dict]:
    sep = "&" if "?" in path else "?"
    response = get(ds, f"{path}{sep}_shape=array&_size=max")
    assert response.status_code == 200, response.text
    return response.json()


def query(db: Path, sql: str, params: tuple = ()) -> list[dict]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


@contextmanager
def served(db: Path, *options: str) -> Iterator[str]:
    """``daydream browse`` (with ``options``) on a free loopback port, as a user starts it:
    its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "daydream", "browse", "--db", str(db), "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "daydream browse did not start"
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def _chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *arguments,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )


def screenshot(url: str, path: Path, profile: Path, size: tuple[int, int] = (1280, 900)) -> Path:
    """A headless Chromium screenshot of ``url`` in a ``size`` window, saved at ``path``."""
    _chromium(profile, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", url)
    return path


def rendered(url: str, profile: Path) -> str:
    """The page at ``url`` as headless Chromium has it after its scripts ran (the DOM)."""
    return _chromium(profile, "--dump-dom", url).stdout.decode()


def assert_png(path: Path, size: tuple[int, int]) -> None:
    """A PNG of ``size`` pixels with something drawn (a blank page compresses to a few kB)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == size
    assert len(data) > 20_000
