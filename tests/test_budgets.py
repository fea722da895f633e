"""Budgets and unknown prices: ``daydream run --max-cost`` (or the spec's ``budget_usd``)
stops claiming before spent + the most the running calls can cost would pass the cap,
across worker processes, and leaves the rest pending; a price nobody knows is "unknown",
never $0.

Real ``daydream run`` processes call ``FakeAPI`` on 127.0.0.1; the model's catalog prices
make every call's cost known (tokens x price).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakeapi import FakeAPI
from tests.invariants import check_invariants
from tests.scenario import (
    cohort,
    combo_ids,
    daydream_cmd,
    model,
    plan,
    query,
    run,
    scalar,
    write_catalog,
    write_spec,
)

PRICED = {"price_input_per_mtok": 1000, "price_output_per_mtok": 1000}  # $0.001 a token


def run_k(db: Path, api: FakeAPI, *args: str):
    cmd = daydream_cmd("run", "k", "--db", str(db), "--base-url", f"vllm={api.base_url}", *args)
    return run(cmd, check=False, timeout=180)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def spent(db: Path) -> float:
    return scalar(db, "SELECT coalesce(sum(cost), 0) FROM calls")


def long_reply(body: dict) -> str:
    """A reply that uses (almost) all of its max_tokens, so a call costs nearly the most it
    could: the budget's reservations are what keep concurrent calls under the cap."""
    size = body["max_tokens"] * 4 - 40
    line = "an idea worth a closer look, with its mechanism\n"
    score = "SCORE: 7\n" if "SCORE" in body["messages"][-1]["content"] else "the end\n"
    return (line * (size // len(line) + 1))[:size] + "\n" + score


def test_a_budget_cap_holds_across_workers_and_the_run_stops_cleanly(tmp_path):
    """Six calls at once, each costing nearly its most ($0.40 a draft): without holding
    what the running calls may cost against the cap, the six would pass $2 together."""
    priced = {"price_input_per_mtok": 0, "price_output_per_mtok": 1000}  # $0.001 an output token
    with FakeAPI(latency_s=0.2, reply=long_reply) as api:
        db = cohort(tmp_path, [model("m1", **priced)], combos=10)
        done = run_k(db, api, "--max-cost", "2", "--workers", "2", "--concurrency", "3")
        assert done.returncode == 6, done.stderr
        pending = scalar(db, "SELECT count(*) FROM generations WHERE status IN ('ready', 'waiting')")
        assert 1.5 < spent(db) <= 2
        assert pending > 0
        assert scalar(db, "SELECT count(*) FROM generations WHERE status = 'failed'") == 0
        assert error_lines(done.stderr) == [
            f"Error: stopped: the budget of $2 leaves no room for another call"
            f" (${spent(db):.4f} spent); {pending} generation(s) are still pending; raise"
            " --max-cost (or the spec's budget_usd) to go on"
        ]
        reserved = query(
            db,
            "SELECT json_extract(data, '$.reserved_usd') FROM events"
            " WHERE type = 'attempt.started' AND subject LIKE 'd_%'",
        )
        assert reserved and all(r[0] > 0 for r in reserved)  # each call reserved its most
        check_invariants(db, pending=True)
        again = run_k(db, api, "--max-cost", "100")
    assert again.returncode == 0, again.stderr
    assert scalar(db, "SELECT count(*) FROM generations WHERE status != 'done'") == 0


def test_the_specs_budget_usd_caps_a_run_unless_max_cost_says_otherwise(tmp_path):
    with FakeAPI() as api:
        catalog = write_catalog(tmp_path / "catalog", models=[model("m1", **PRICED)], combos=6)
        spec = {
            "budget_usd": 0.8,
            "axes": {
                "combo_id": combo_ids(6),
                "draft_template": ["notes"],
                "draft_llm": ["m1"],
                "essay_template": ["copy"],
                "evaluation_template": ["judge"],
                "evaluation_llm": ["m1"],
            },
        }
        path = tmp_path / "spec.yaml"
        path.write_text(json.dumps(spec), encoding="utf-8")
        db = tmp_path / "run.db"
        plan(db, catalog, path)
        assert scalar(db, "SELECT budget_usd FROM cohorts") == 0.8
        capped = run_k(db, api)
        assert capped.returncode == 6, capped.stderr
        assert spent(db) <= 0.8
        more = run_k(db, api, "--max-cost", "50")
    assert more.returncode == 0, more.stderr


def test_a_budget_refuses_calls_of_unknown_cost_unless_told_how_to_count_them(tmp_path):
    with FakeAPI() as api:
        db = cohort(tmp_path, [model("m1")], combos=2)  # no prices
        refused = run_k(db, api, "--max-cost", "1")
        free = run_k(db, api, "--max-cost", "1", "--unpriced-per-mtok", "0")
    assert refused.returncode == 1
    assert error_lines(refused.stderr) == [
        "Error: budget: model(s) m1 have no prices, so what their calls cost is unknown; add"
        " price_input_per_mtok and price_output_per_mtok in models.yaml, or say how to count"
        " them: --unpriced-per-mtok 0 (free: a local server) or a price in USD per million"
        " tokens"
    ]
    assert free.returncode == 0, free.stderr


def test_a_budget_needs_a_ceiling_on_every_call(tmp_path):
    templates = {
        "draft": [{"id": "notes", "parser": "identity"}],  # no max_tokens
        "essay": [{"id": "copy", "generator": "copy"}],
        "evaluation": [{"id": "judge", "parser": "score", "scale": [0, 10], "max_tokens": 300}],
    }
    with FakeAPI() as api:
        db = cohort(tmp_path, [model("m1", **PRICED)], templates=templates)
        done = run_k(db, api, "--max-cost", "5")
    assert done.returncode == 1
    assert error_lines(done.stderr) == [
        "Error: budget: calls of model m1 with template draft/notes have no max_tokens, so"
        " their cost has no ceiling; set max_tokens on the template or the model"
    ]


def test_unknown_prices_are_unknown_never_zero(tmp_path):
    with FakeAPI() as api:
        db = cohort(tmp_path, [model("m1")], combos=2)
        spec = write_spec(tmp_path / "more.yaml", {"combo_id": combo_ids(2), "draft_template": ["notes"], "draft_llm": ["m1"], "draft_replicate": [2]})
        dry = run(daydream_cmd("plan", str(spec), "--cohort", "more", "--db", str(db), "--dry-run", "--json"))
        rehearsal = run(daydream_cmd("run", "k", "--db", str(db), "--rehearse", "--base-url", f"vllm={api.base_url}"))
        assert run_k(db, api).returncode == 0
        status = run(daydream_cmd("status", "k", "--db", str(db), "--json"))
        text = run(daydream_cmd("status", "k", "--db", str(db))).stdout
    assert json.loads(dry.stdout)["cost_estimate_usd"] == {"low": None, "high": None, "complete": False}
    assert "  forecast total: unknown" in rehearsal.stdout
    report = json.loads(status.stdout)
    assert (report["cost_usd"], report["unpriced_models"]) == (None, ["m1"])
    assert [m["cost"] for m in report["models"]] == [None]
    assert "4 ok, 0 errors" in text and "cost unknown (no prices)" in text
    assert query(db, "SELECT cost FROM model_usage") == [(None,)]
