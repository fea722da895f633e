"""A small world for the worker and reliability tests: a catalog on disk, a planned cohort,
real worker processes, the gen id of each request the fake API receives, and a clock that
stands still for driving the queue directly.

Every template body starts with ``[gen {{ gen_id }}]``, so the loopback ``FakeAPI`` can
script faults per generation (``gen_of(body)``) and duplicate provider calls can be
counted per generation. Models call the provider ``vllm`` with the fake API as its base
URL (``--base-url vllm=...``), except where a test sets the URL in the catalog.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.db.connection import connect
from daydream.plan.write import plan_cohort
from daydream.worker.config import WorkerConfig
from daydream.worker.execute import Executor

CONCEPTS = [
    ("alpha", "Alpha", "Alpha waves rise when the eyes close and the mind drifts."),
    ("beta", "Beta", "Beta testing finds the bugs that real users meet first."),
    ("gamma", "Gamma", "Gamma rays pass through most matter and reveal hidden structure."),
    ("delta", "Delta", "A river delta splits one flow into many slow channels."),
    ("kappa", "Kappa", "Cohen's kappa corrects agreement between judges for chance."),
]

DRAFT_BODY = (
    "[gen {{ gen_id }}]\nConcepts:\n{% for c in concepts %}- {{ c.name }}: {{ c.content }}\n"
    "{% endfor %}Write brainstorm notes linking them.\n"
)
ESSAY_BODY = "[gen {{ gen_id }}]\nNOTES\n{{ draft_block }}\nEND\nWrite an essay on the best idea.\n"
JUDGE_BODY = (
    "[gen {{ gen_id }}]\nESSAY\n{{ response }}\nEND OF ESSAY\n"
    "Judge its novelty, then end with a final line SCORE: X (X from 0 to 10).\n"
)

TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "draft": [{"id": "notes", "parser": "identity", "temperature": 0.3, "max_tokens": 400}],
    "essay": [
        {"id": "copy", "generator": "copy"},
        {"id": "write", "parser": "identity", "temperature": 0.5, "max_tokens": 600},
    ],
    "evaluation": [
        {"id": "judge", "parser": "score", "scale": [0, 10], "temperature": 0.0, "max_tokens": 300}
    ],
}
BODIES = {("draft", "notes"): DRAFT_BODY, ("essay", "write"): ESSAY_BODY}
BODIES[("evaluation", "judge")] = JUDGE_BODY

GEN_LINE = re.compile(r"^\[gen ([a-z]_[a-z0-9]+)\]")


def model(model_id: str, provider_model: str | None = None, **fields: Any) -> dict[str, Any]:
    """A models.yaml entry on the ``vllm`` provider (the fake API stands in for it)."""
    return {"id": model_id, "provider": "vllm", "model": provider_model or model_id, **fields}


def offline_model(
    model_id: str = "m1", provider_model: str = "small", **fields: Any
) -> dict[str, Any]:
    """A models.yaml entry on the ``offline`` provider (no HTTP at all)."""
    return {"id": model_id, "provider": "offline", "model": provider_model, **fields}


def write_catalog(
    root: Path,
    *,
    models: list[dict[str, Any]],
    combos: int = 2,
    templates: dict[str, list[dict[str, Any]]] | None = None,
    bodies: dict[tuple[str, str], str] | None = None,
) -> Path:
    """A catalog directory in the daydream layout; ``combos`` combos of two concepts each."""
    root.mkdir(parents=True, exist_ok=True)
    concepts = [{"id": c, "name": n, "sentence": s} for c, n, s in CONCEPTS]
    pairs = [(a, b) for i, a in enumerate(CONCEPTS) for b in CONCEPTS[i + 1 :]]
    if combos > len(pairs):
        raise ValueError(f"at most {len(pairs)} combos")
    combo_entries = [
        {"id": f"c{i}", "concepts": [a[0], b[0]], "level": "sentence"}
        for i, (a, b) in enumerate(pairs[:combos], 1)
    ]
    templates = templates or TEMPLATES
    _dump(root / "concepts.yaml", concepts)
    _dump(root / "combos.yaml", combo_entries)
    _dump(root / "templates.yaml", templates)
    _dump(root / "models.yaml", models)
    for (stage, template_id), body in {**BODIES, **(bodies or {})}.items():
        if any(t["id"] == template_id for t in templates.get(stage, [])):
            path = root / "templates" / stage / f"{template_id}.j2"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
    return root


def combo_ids(count: int) -> list[str]:
    return [f"c{i}" for i in range(1, count + 1)]


def write_spec(path: Path, axes: dict[str, Any], rules: dict[str, Any] | None = None) -> Path:
    spec: dict[str, Any] = {"axes": axes}
    if rules:
        spec["rules"] = rules
    _dump(path, spec)
    return path


def plan(db: Path, catalog_dir: Path, spec_path: Path, cohort: str = "k") -> dict[str, Any]:
    """Import the catalog and plan the spec as ``cohort``; returns the plan report as a dict."""
    conn = connect(db, create=True)
    try:
        import_catalog(conn, load_catalog(catalog_dir), actor="test")
        return plan_cohort(conn, spec_path, cohort, actor="test").to_dict()
    finally:
        conn.close()


def cohort(
    root: Path,
    models: list[dict[str, Any]],
    *,
    combos: int = 2,
    axes: dict[str, Any] | None = None,
    templates: dict[str, list[dict[str, Any]]] | None = None,
    bodies: dict[tuple[str, str], str] | None = None,
) -> Path:
    """Plan cohort ``k`` from ``root/catalog`` and ``root/spec.yaml`` into ``root/run.db``
    (returned): by default draft -> copy essay -> one judge, all by ``m1``; ``axes``
    replaces or adds axes of that spec."""
    catalog = write_catalog(
        root / "catalog", models=models, combos=combos, templates=templates, bodies=bodies
    )
    spec = {
        "combo_id": combo_ids(combos),
        "draft_template": ["notes"],
        "draft_llm": ["m1"],
        "essay_template": ["copy"],
        "evaluation_template": ["judge"],
        "evaluation_llm": ["m1"],
        **(axes or {}),
    }
    db = root / "run.db"
    plan(db, catalog, write_spec(root / "spec.yaml", spec))
    return db


def gen_of(body: Any) -> str | None:
    """The gen id a chat-completions request body is for (from its prompt's first line)."""
    try:
        prompt = body["messages"][-1]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    match = GEN_LINE.match(prompt)
    return match.group(1) if match else None


def script_by_gen(faults: dict[str, list[Any]]) -> Callable[[int, Any], Any]:
    """A FakeAPI script: each gen id's requests take its faults in order, then ``ok``.

    ``faults`` is read when a request arrives, so a test may fill it after the server
    started (once the cohort is planned and the gen ids are known). The lists are consumed.
    """

    def choose(index: int, body: Any) -> Any:
        queue = faults.get(gen_of(body) or "")
        return queue.pop(0) if queue else None

    return choose


def requests_per_gen(api: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in api.requests:
        gen = gen_of(request.body)
        if gen:
            counts[gen] = counts.get(gen, 0) + 1
    return counts


# -- the queue driven directly, with a clock that stands still -----------------------------

T0 = datetime(2031, 1, 1, 12, 0, tzinfo=timezone.utc)


class FixedClock:
    """Now is ``moment`` (``T0`` unless given) until the test moves it on."""

    def __init__(self, moment: datetime = T0) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


def fake_outcomes(pool: str, pattern: str) -> list[Any]:
    """Fake outcomes of model calls on ``pool``: one per character, "4" a 429, "." a success
    (their tasks hold no lease: only the pools' adaptation reads them)."""
    from daydream.queue.tasks import Outcome

    class _Task:
        def __init__(self, n: int) -> None:
            self.pool, self.mode, self.gen_id, self.token = pool, "llm", f"g{n}", 0

    return [Outcome(_Task(n), [], ok=c == ".", throttled=c == "4") for n, c in enumerate(pattern)]


def execute(config: WorkerConfig, tasks: list[Any], clock: Callable[[], datetime]) -> list[Any]:
    """Run claimed tasks one after the other through a worker's executor; their outcomes."""

    async def go() -> list[Any]:
        executor = Executor(config, clock=clock)
        try:
            return [await executor.run(task) for task in tasks]
        finally:
            await executor.aclose()

    return asyncio.run(go())


# -- processes ----------------------------------------------------------------------------


def daydream_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "daydream", *args]


def worker_cmd(db: Path, *args: str, base_url: str | None = None) -> list[str]:
    cmd = daydream_cmd("worker", "--db", str(db), *args)
    if base_url:
        cmd += ["--base-url", f"vllm={base_url}"]
    return cmd


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("DAYDREAM_")}
    out.update(extra)
    return out


def run(
    cmd: list[str],
    *,
    timeout: float = 60,
    environ: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run a daydream command to completion; fail the test with its output on a bad exit."""
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=environ or env()
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd[2:])} exited {done.returncode}\nstdout:\n{done.stdout}\n"
            f"stderr:\n{done.stderr}"
        )
    return done


def start(
    cmd: list[str], log: Path, *, environ: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.Popen:
    """Start a process whose stdout and stderr go to ``log``."""
    handle = open(log, "ab")  # noqa: SIM115 - the child owns it; closed with the Popen below
    try:
        return subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, env=environ or env(), **kwargs
        )
    finally:
        handle.close()


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop(procs: Iterable[subprocess.Popen]) -> None:
    """Kill what is still running (a failed test must not leak worker processes)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


# -- reading the database -----------------------------------------------------------------


def query(db: Path, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    conn = connect(db, create=False, migrate=False)
    try:
        return [tuple(row) for row in conn.execute(sql, list(params))]
    finally:
        conn.close()


def scalar(db: Path, sql: str, params: Iterable[Any] = ()) -> Any:
    rows = query(db, sql, params)
    return rows[0][0] if rows else None


def gen_ids(db: Path, stage: str | None = None) -> list[str]:
    sql = "SELECT gen_id FROM generations"
    params: list[Any] = []
    if stage:
        sql += " WHERE stage = ?"
        params.append(stage)
    return [r[0] for r in query(db, sql + " ORDER BY rowid", params)]


def events_of(
    db: Path, gen_id: str | None = None, types: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Events as dicts (``id``, ``type``, ``recorded_at`` and the event's fields), in order."""
    sql = "SELECT id, type, data, recorded_at, actor FROM events WHERE 1"
    params: list[Any] = []
    if gen_id:
        sql += " AND subject = ?"
        params.append(gen_id)
    types = list(types)
    if types:
        sql += f" AND type IN ({', '.join('?' for _ in types)})"
        params += types
    return [
        {"id": i, "type": t, "recorded_at": at, "actor": actor, **json.loads(data)}
        for i, t, data, at, actor in query(db, sql + " ORDER BY id", params)
    ]


def text(db: Path, digest: str | None) -> str | None:
    return scalar(db, "SELECT text FROM texts WHERE hash = ?", [digest]) if digest else None


def _dump(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def fail_generations(conn: Any, gen_ids: Iterable[str], state: str = "provider_error") -> None:
    """Record a final failed attempt for each generation, as a worker that gave up would
    (``attempt.started`` then ``attempt.failed``, final): their descendants are blocked."""
    from daydream import events as ev
    from daydream.db.log import append

    for gen_id in gen_ids:
        (token,) = append(
            conn,
            [ev.AttemptStarted(gen_id=gen_id, attempt=1, worker="t", lease_expires_at="2999-01-01T00:00:00Z")],
            actor="test",
        )
        append(
            conn,
            [
                ev.AttemptFailed(
                    gen_id=gen_id,
                    token=token,
                    state=state,
                    error=f"{state} (test)",
                    retryable=False,
                    final=True,
                )
            ],
            actor="test",
        )
