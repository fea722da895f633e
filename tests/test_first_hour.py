"""The first hour, tried as a new user would: a misspelt axis, a spec that names its
cohort, an empty folder, a busy port, a rehearsal of a 1-10 rubric, the live progress
line of ``daydream run`` on a terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream.cli import cli
from tests.scenario import TEMPLATES, env, offline_model, plan, write_catalog, write_spec


def invoke(*args: object, cwd: Path | None = None):
    if cwd is None:
        return CliRunner().invoke(cli, [str(a) for a in args])
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, [str(a) for a in args])
    finally:
        os.chdir(old)


def events_in(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def catalog(tmp_path) -> tuple[Path, Path]:
    """An imported catalog (offline model m1) in ``run.db``: (database, catalog dir)."""
    root = write_catalog(tmp_path / "catalog", models=[offline_model("m1")])
    db = tmp_path / "run.db"
    result = invoke("catalog", "import", root, "--db", db)
    assert result.exit_code == 0, result.output
    return db, root


def test_a_misspelt_axis_is_refused_with_a_suggestion_and_plans_nothing(catalog, tmp_path):
    db, _ = catalog
    before = events_in(db)
    spec = write_spec(
        tmp_path / "typo.yaml",
        {
            "combo_id": ["c1"],
            "draft_template": ["notes"],
            "drafts_llm": ["m1"],
            "draft_replicates": [1, 2],
        },
    )
    result = invoke("plan", spec, "--cohort", "typo", "--db", db)
    assert result.exit_code == 1
    assert result.output == (
        f'Error: spec {spec}: axes.drafts_llm: "drafts_llm" is not a column the planner reads'
        ' (did you mean "draft_llm"?); axes.draft_replicates: "draft_replicates" is not a'
        ' column the planner reads (did you mean "draft_replicate"?); rename it\n'
    )
    assert events_in(db) == before
    for axis, meant in (("evaluation_templates", "evaluation_template"), ("essay_lm", "essay_llm")):
        odd = write_spec(tmp_path / f"{axis}.yaml", {"combo_id": ["c1"], axis: ["x"]})
        result = invoke("plan", odd, "--cohort", "typo", "--dry-run", "--db", db)
        assert result.exit_code == 1 and f'(did you mean "{meant}"?)' in result.output


def test_plan_takes_the_cohort_id_from_the_specs_name(catalog, tmp_path):
    db, _ = catalog
    named = tmp_path / "named.yaml"
    named.write_text(
        "name: first-try\naxes:\n  combo_id: [c1]\n  draft_template: [notes]\n  draft_llm: [m1]\n",
        encoding="utf-8",
    )
    result = invoke("plan", named, "--db", db)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("cohort first-try: 1 spec row(s)")
    unnamed = write_spec(tmp_path / "unnamed.yaml", {"combo_id": ["c1"]})
    refused = invoke("plan", unnamed, "--db", db)
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: spec {unnamed} has no name: give the cohort id with --cohort ID, or add"
        " name: ID to the spec\n"
    )


def test_an_empty_folder_points_at_the_first_real_step(tmp_path):
    for command in (("status",), ("top", "demo"), ("search", "idea"), ("show", "e_x")):
        result = invoke(*command, cwd=tmp_path)
        assert result.exit_code == 1, command
        assert result.output == (
            "Error: database daydream.db does not exist; start with: daydream catalog import"
            " CATALOG_DIR (it creates the database), or try: daydream demo\n"
        )
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_browse_on_a_busy_port_says_so_in_one_line(catalog):
    db, _ = catalog
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("browse", "--db", db, "--port", port)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: port {port} on 127.0.0.1 is in use (another daydream browse or datasette?);"
        f" choose another with --port {port + 1}\n"
    )


def test_a_rehearsal_judges_within_each_rubrics_scale(tmp_path):
    """The offline judge answers 0-9; a rehearsal of a 1-10 rubric must not call the
    rubric broken when it is not."""
    templates = {
        **TEMPLATES,
        "evaluation": [{**TEMPLATES["evaluation"][0], "scale": [1, 10]}],
    }
    root = tmp_path / "w"
    catalog = write_catalog(root / "catalog", models=[offline_model("m1")], combos=5, templates=templates)
    spec = write_spec(
        root / "spec.yaml",
        {
            "combo_id": ["c1", "c2", "c3", "c4", "c5"],
            "draft_template": ["notes"],
            "draft_llm": ["m1"],
            "essay_template": ["copy"],
            "evaluation_template": ["judge"],
            "evaluation_llm": ["m1"],
            "evaluation_replicate": [1, 2, 3, 4],
        },
    )
    db = root / "run.db"
    plan(db, catalog, spec)
    result = invoke("run", "k", "--rehearse", "--db", db)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("no template errors, every reply parsed")


def test_run_takes_offline_latency_like_worker():
    for command in ("run", "worker"):
        assert "--offline-latency" in invoke(command, "--help").output


def test_the_live_progress_line_ends_cleanly_on_a_terminal(tmp_path):
    """On a terminal ``daydream run`` redraws one progress line; each worker's summary
    stands on a line of its own, and a worker that found nothing to do says nothing."""
    root = tmp_path / "w"
    catalog = write_catalog(root / "catalog", models=[offline_model("m1")], combos=2)
    spec = write_spec(
        root / "spec.yaml",
        {"combo_id": ["c1"], "draft_template": ["notes"], "draft_llm": ["m1"]},
    )
    db = root / "run.db"
    plan(db, catalog, spec)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daydream", "run", "k", "--workers", "3", "--offline-latency", "0.2", "--db", str(db)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env(),
    )
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: every writer exited
            break
        if not chunk:
            break
        output += chunk
    proc.wait(60)
    os.close(leader)
    assert proc.returncode == 0, output
    text = output.decode()
    summaries = re.findall(r"(.*)worker [^:\n]+: \d+ ok", text)
    assert len(summaries) == 1, text  # one draft: one worker did it, two were idle
    assert summaries[0].endswith("\r\x1b[K"), repr(text)  # cleared its line first
    assert "0 ok, 0 failed" not in text
