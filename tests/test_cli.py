"""The command line: one-line errors with exit 1, event filters, db check, spec compile,
catalog list.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream.cli import cli
from tests.example_catalog import (
    CATALOG,
    CATALOG_EVENTS,
    DRAFT_TEMPLATES,
    DRAFTS,
    EXAMPLE,
    IMPORT_HINT,
    MODELS,
    SIZES,
    write_spec,
)

N = CATALOG_EVENTS  # events written by importing the example catalog


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args: str):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "cli.db"
    ok("catalog", "import", EXAMPLE, "--db", path)
    return path


def events_in(path: Path) -> int:
    raw = sqlite3.connect(path)
    try:
        return raw.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        raw.close()


# ------------------------------------------------------------------ errors


def _error_cases(tmp: Path, db: Path) -> list[tuple[list, str]]:
    """(arguments, the whole expected message) for each failure a user can cause."""
    dup = write(tmp / "dup.yaml", "axes:\n  a: [1, 1]\n")
    bad_yaml = write(tmp / "bad_yaml.yaml", "axes: [\n")
    key = write(tmp / "key.yaml", "axes:\n  a: [1]\nbogus: 1\n")
    include = write(tmp / "include.yaml", 'axes:\n  a: "@file:missing.csv"\n')
    rule = write(
        tmp / "rule.yaml",
        "axes:\n  a: [1]\nrules:\n  pairs:\n    p1:\n      left: draft_tmpl\n"
        "      right: a\n      allowed: [[1, 1]]\n",
    )
    template = write_spec(
        tmp,
        "template",
        {**DRAFTS, "axes": {**DRAFTS["axes"], "draft_template": ["rolling-idea", "nope"]}},
    )
    model = write_spec(
        tmp,
        "model",
        {**DRAFTS, "axes": {**DRAFTS["axes"], "draft_llm": ["offline-small", "gpt-99"]}},
    )
    combo = write_spec(
        tmp, "combo", {**DRAFTS, "axes": {**DRAFTS["axes"], "combo_id": ["fungal-market", "ghost"]}}
    )
    judge = write_spec(
        tmp,
        "judge",
        {
            "axes": {
                "essay_id": ["e_nope"],
                "evaluation_template": ["novelty-rubric"],
                "evaluation_llm": ["offline-small"],
            }
        },
    )
    good = write_spec(tmp, "good", DRAFTS)
    no_name = write(tmp / "cat1" / "concepts.yaml", "- id: x\n").parent
    bad_cat_yaml = write(tmp / "cat2" / "concepts.yaml", "concepts: [\n").parent
    not_catalog = (tmp / "empty").resolve()
    not_catalog.mkdir()
    missing_db = tmp / "missing.db"
    return [
        (
            ["spec", "compile", tmp / "nope.yaml"],
            f"spec {tmp / 'nope.yaml'}: file not found; check the path",
        ),
        (
            ["spec", "compile", dup],
            f"spec {dup}: axes.a[1]: duplicate level 1 (first at [0]); remove one",
        ),
        (
            ["spec", "compile", bad_yaml],
            f"spec {bad_yaml}: line 2, column 1: invalid YAML (expected the node content, but"
            " found '<stream end>'); fix the syntax",
        ),
        (
            ["spec", "compile", key],
            f'spec {key}: unknown top-level key "bogus" (allowed: name, description, axes,'
            " rules, output, budget_usd)",
        ),
        (
            ["spec", "compile", include],
            f'spec {include}: axes.a: @file "missing.csv" not found'
            f" (looked for {tmp / 'missing.csv'});"
            " fix the path, which is relative to the spec's directory",
        ),
        (
            ["spec", "compile", rule],
            f'spec {rule}: rules.pairs.p1.left: axis "draft_tmpl" is not declared (declared: a)',
        ),
        (
            ["plan", dup, "--cohort", "c", "--db", db],
            f"spec {dup}: axes.a[1]: duplicate level 1 (first at [0]); remove one",
        ),
        (
            ["plan", template, "--cohort", "c", "--db", db],
            f'plan {template}: unknown draft template "nope" (catalog has:'
            f" {DRAFT_TEMPLATES}; {IMPORT_HINT}) (first in row 3)",
        ),
        (
            ["plan", model, "--cohort", "c", "--db", db, "--dry-run"],
            f'plan {model}: unknown model "gpt-99" (catalog has: {MODELS}; add it to the'
            f" catalog and {IMPORT_HINT}) (first in row 3)",
        ),
        (
            ["plan", combo, "--cohort", "c", "--db", db],
            f'plan {combo}: unknown combo "ghost" (define it in the catalog\'s combos and'
            f" {IMPORT_HINT}) (first in row 3)",
        ),
        (
            ["plan", judge, "--cohort", "c", "--db", db],
            f'plan {judge}: essay_id "e_nope" is not an existing essay generation (first in row 1)',
        ),
        (
            ["plan", good, "--cohort", "no spaces", "--db", db],
            'cohort id "no spaces" is invalid: use letters, digits, "-", "_" or "."'
            " (starting with a letter or digit)",
        ),
        (
            ["plan", good, "--cohort", "c", "--db", missing_db],
            f"database {missing_db} does not exist; start with: daydream catalog import"
            " CATALOG_DIR (it creates the database), or try: daydream demo",
        ),
        (
            ["catalog", "import", no_name, "--db", db],
            f'catalog {no_name / "concepts.yaml"}: [0] concept "x": name is missing (add it)',
        ),
        (
            ["catalog", "import", bad_cat_yaml, "--db", db],
            f"catalog {bad_cat_yaml / 'concepts.yaml'}: invalid YAML at line 2, column 1:"
            " expected the node content, but found '<stream end>' (fix the syntax)",
        ),
        (
            ["catalog", "import", not_catalog, "--db", db],
            f"catalog {not_catalog}: no concepts_metadata.csv (upstream layout, here or in"
            " 1_raw/) nor concepts.yaml (daydream layout) (give a catalog directory)",
        ),
        (
            ["catalog", "list", "--db", missing_db],
            f"database {missing_db} does not exist; start with: daydream catalog import"
            " CATALOG_DIR (it creates the database), or try: daydream demo",
        ),
        (
            ["events", "--db", missing_db],
            f"database {missing_db} does not exist; start with: daydream catalog import"
            " CATALOG_DIR (it creates the database), or try: daydream demo",
        ),
        (
            ["spec", "compile", good, "--out", tmp / "no-such-dir" / "rows.csv"],
            f"{tmp / 'no-such-dir' / 'rows.csv'}: no such file or directory (check the path)",
        ),
        (
            ["db", "check", "--db", missing_db],
            f"database {missing_db} does not exist; start with: daydream catalog import"
            " CATALOG_DIR (it creates the database), or try: daydream demo",
        ),
        (
            ["demo", "--db", dup, "--fresh"],  # a spec, not a database: --fresh keeps it
            f"{dup} is not a daydream database; --fresh only replaces one (choose another --db)",
        ),
        (
            ["catalog", "import", EXAMPLE, "--db", tmp / "no-such-dir" / "new.db"],
            f"database {tmp / 'no-such-dir' / 'new.db'}: directory {tmp / 'no-such-dir'} does"
            " not exist (create it, or choose another --db)",
        ),
    ]


def test_every_error_is_one_line_with_exit_1_and_no_traceback(tmp_path, db):
    cases = _error_cases(tmp_path, db)
    before = events_in(db)
    for args, message in cases:
        result = invoke(*args)
        where = " ".join(str(a) for a in args)
        assert result.exit_code == 1, (where, result.output)
        assert isinstance(result.exception, SystemExit), (where, result.exception)
        assert result.stdout == "", where
        assert result.stderr == f"Error: {message}\n", where
        assert "Traceback" not in result.output
    assert events_in(db) == before
    assert not (tmp_path / "missing.db").exists()  # a failed plan creates no database
    assert (tmp_path / "dup.yaml").read_text() == "axes:\n  a: [1, 1]\n"


def test_errors_in_a_real_process(tmp_path, db):
    """The same in a subprocess: exactly one stderr line, no traceback."""
    spec = write_spec(tmp_path, "bad", {"axes": {**DRAFTS["axes"], "draft_template": ["nope"]}})
    for args, message in [
        (
            ["plan", spec, "--cohort", "c", "--db", db],
            f'plan {spec}: unknown draft template "nope" (catalog has:'
            f" {DRAFT_TEMPLATES}; {IMPORT_HINT}) (first in row 1)",
        ),
        (
            ["spec", "compile", tmp_path / "x.yaml"],
            f"spec {tmp_path / 'x.yaml'}: file not found; check the path",
        ),
    ]:
        run = subprocess.run(
            [sys.executable, "-m", "daydream", *map(str, args)], capture_output=True, text=True
        )
        assert (run.returncode, run.stdout, run.stderr) == (1, "", f"Error: {message}\n")


def test_a_plan_error_on_an_empty_database(tmp_path):
    path = tmp_path / "empty.db"
    ok("db", "init", "--db", path)
    spec = write_spec(tmp_path, "drafts", DRAFTS)
    result = invoke("plan", spec, "--cohort", "c", "--db", path)
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: plan {spec}: the database has no catalog; import one first with:"
        " daydream catalog import DIR\n",
    )


def test_option_misuse_exits_2(db):
    result = invoke("events", "--type", "nope", "--db", db)
    assert result.exit_code == 2
    assert "Invalid value for --type: unknown event type 'nope' (known: attempt.deferred," in (
        result.stderr
    )
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ events


@pytest.fixture
def planned(tmp_path, db):
    ok("plan", write_spec(tmp_path, "a", DRAFTS), "--cohort", "a", "--db", db)
    ok(
        "plan",
        write_spec(tmp_path, "b", {"axes": {**DRAFTS["axes"], "draft_replicate": [3]}}),
        "--cohort",
        "b",
        "--db",
        db,
    )
    return db


def _ids_and_types(output: str) -> list[tuple[int, str, str]]:
    rows = []
    for line in output.splitlines():
        parts = line.split()
        rows.append((int(parts[0]), parts[2], parts[3]))
    return rows


def test_events_lists_the_whole_log_in_order(planned):
    rows = _ids_and_types(ok("events", "--db", planned).stdout)
    assert [r[0] for r in rows] == list(range(1, N + 5))
    assert [r[1] for r in rows[N:]] == [
        "cohort.planned",
        "generations.planned",
        "cohort.planned",
        "generations.planned",
    ]
    assert rows[0][1] == "concept.defined" and rows[0][2].startswith("concept:")


def test_events_filters(planned):
    rows = _ids_and_types(ok("events", "--type", "cohort.planned", "--db", planned).stdout)
    assert rows == [(N + 1, "cohort.planned", "cohort:a"), (N + 3, "cohort.planned", "cohort:b")]
    both = ok("events", "--type", "cohort.planned", "--type", "model.defined", "--db", planned)
    assert {t for _, t, _ in _ids_and_types(both.stdout)} == {"cohort.planned", "model.defined"}
    assert len(both.stdout.splitlines()) == 2 + SIZES["models"]
    rows = _ids_and_types(ok("events", "--subject", "cohort:b", "--db", planned).stdout)
    assert rows == [
        (N + 3, "cohort.planned", "cohort:b"),
        (N + 4, "generations.planned", "cohort:b"),
    ]
    rows = _ids_and_types(ok("events", "--after", N + 2, "--db", planned).stdout)
    assert [r[0] for r in rows] == [N + 3, N + 4]
    rows = _ids_and_types(ok("events", "--after", "5", "--limit", "3", "--db", planned).stdout)
    assert [r[0] for r in rows] == [6, 7, 8]
    assert ok("events", "--subject", "cohort:nobody", "--db", planned).stdout == ""


def test_events_json(planned):
    out = ok("events", "--json", "--subject", "cohort:a", "--db", planned).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["type"], r["subject"], r["actor"]) for r in records] == [
        (N + 1, "cohort.planned", "cohort:a", "cli:plan"),
        (N + 2, "generations.planned", "cohort:a", "cli:plan"),
    ]
    assert set(records[0]) == {"id", "type", "subject", "recorded_at", "actor", "data"}
    assert records[0]["recorded_at"].endswith("Z")
    assert records[0]["data"]["cohort_id"] == "a"
    generations = records[1]["data"]["generations"]
    assert len(generations) == 6 and all(g[1] == "draft" for g in generations)


# ------------------------------------------------------------------ db check, rebuild


def test_db_check_passes_on_a_healthy_database(planned):
    out = ok("db", "check", "--db", planned).stdout.splitlines()
    assert [line.split(":")[0] for line in out] == [
        "ok   integrity_check",
        "ok   foreign_key_check",
        "ok   migrations",
        "ok   append_only_guards",
        "ok   replay_equals_projections",
        "ok   search_index",
    ]
    checks = json.loads(ok("db", "check", "--json", "--db", planned).stdout)
    assert all(c["ok"] for c in checks) and len(checks) == 6


def test_db_check_says_what_it_is_doing_on_a_big_database(planned, monkeypatch):
    """From CHECK_PROGRESS_BYTES on, the two long steps are announced on stderr (minutes on
    a day-long log); a small database checks silently; stdout is the same either way."""
    quiet = ok("db", "check", "--db", planned)
    assert quiet.stderr == ""
    import daydream.db.check

    monkeypatch.setattr(daydream.db.check, "CHECK_PROGRESS_BYTES", 0)
    loud = ok("db", "check", "--db", planned)
    events = events_in(planned)
    from daydream.db.files import database_bytes

    size = database_bytes(planned) / 1e6  # file and write-ahead log (none once closed)
    lines = loud.stderr.splitlines()
    assert lines[:2] == [
        f"db check: checking the integrity of {size:,.0f} MB (PRAGMA integrity_check)...",
        f"db check: replaying {events:,} events to compare with the projections...",
    ]
    assert re.fullmatch(
        rf"db check: replayed {events:,} events in \d+ s; comparing the tables\.\.\.", lines[2]
    ), lines[2]
    assert lines[3:] == ["db check: checking the full-text index against the texts..."]
    assert loud.stdout == quiet.stdout


def test_db_check_says_how_far_its_replay_is_and_how_long_is_left(planned, monkeypatch):
    """A long replay reports the events replayed so far and the share, from the second
    report on with an estimate of the time left (at the rate since the first), in order,
    then that the tables are compared."""
    import daydream.db.check

    monkeypatch.setattr(daydream.db.check, "CHECK_PROGRESS_BYTES", 0)
    monkeypatch.setattr(daydream.db.check, "REPLAY_BATCH", 10)
    monkeypatch.setattr(daydream.db.check, "REPLAY_REPORT_EVERY_S", 0.0)
    events = events_in(planned)
    lines = ok("db", "check", "--db", planned).stderr.splitlines()
    pattern = (
        rf"db check: replayed (\d+) of {events:,} events \((\d+)%\)"
        r"(, about (\d+ s|\d+ min \d\d s) left)?\.\.\."
    )
    found = [(i, m) for i, line in enumerate(lines) if (m := re.fullmatch(pattern, line))]
    done = [int(m.group(1)) for _, m in found]
    assert done == list(range(10, events, 10)), lines
    assert [m.group(3) is not None for _, m in found] == [False] + [True] * (len(found) - 1)
    assert [int(m.group(2)) for _, m in found] == [round(100 * d / events) for d in done]
    assert lines[found[-1][0] + 1].endswith("; comparing the tables..."), lines


def test_a_database_in_a_directory_with_an_awkward_name_is_checked_browsed_and_read(tmp_path):
    """Read-only opens go through a SQLite URI; '#', '?', '%' and spaces in the path are
    escaped, so they open the database itself (not a stray file named after a prefix)."""
    odd = tmp_path / "run #2? 100%"
    odd.mkdir()
    path = odd / "cli.db"
    ok("catalog", "import", EXAMPLE, "--db", path)
    ok("plan", write_spec(tmp_path, "a", DRAFTS), "--cohort", "a", "--db", path)
    out = ok("db", "check", "--db", path).stdout
    assert out.count("ok   ") == 6, out
    assert "a" in ok("status", "--json", "--db", path).stdout
    assert json.loads(ok("status", "a", "--json", "--db", path).stdout)["stages"]["draft"]
    from daydream.browse.metadata import database_metadata

    assert database_metadata(path, "cli")["tables"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", odd.name]
    assert sorted(p.name for p in odd.iterdir() if not p.name.startswith("cli.db")) == []


@pytest.mark.parametrize("trigger", ["events_no_update", "events_no_delete", "events_no_replace"])
def test_db_check_fails_when_a_guard_trigger_was_dropped(planned, trigger):
    raw = sqlite3.connect(planned)
    raw.execute(f"DROP TRIGGER {trigger}")
    raw.commit()
    raw.close()
    result = invoke("db", "check", "--db", planned)
    assert result.exit_code == 1
    assert result.stdout == (
        f"FAIL append_only_guards: database {planned}: append-only guard trigger(s) {trigger}"
        " are missing, so the event log may have been altered; refusing to open it (restore"
        " the database from a backup)\n"
    )
    assert "Traceback" not in result.output
    run = subprocess.run(
        [sys.executable, "-m", "daydream", "db", "check", "--db", str(planned)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and run.stdout.startswith("FAIL append_only_guards")
    assert "Traceback" not in run.stderr
    # Every other command refuses the database too, with one line.
    result = invoke("events", "--db", planned)
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: database {planned}:")


def test_db_check_fails_on_a_tampered_projection_and_rebuild_repairs_it(planned):
    raw = sqlite3.connect(planned)
    raw.execute("UPDATE generations SET replicate = 9 WHERE rowid = 1")
    raw.commit()
    raw.close()
    result = invoke("db", "check", "--db", planned)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-2] == (
        "FAIL replay_equals_projections: generations: live 9 rows, replay 9 rows"
        " (same count, different content)"
    )
    assert ok("db", "rebuild", "--db", planned).stdout == (
        f"{planned}: projections rebuilt from {N + 4} event(s)\n"
    )
    ok("db", "check", "--db", planned)


# ------------------------------------------------------------------ spec compile


def test_spec_compile_csv_to_stdout(tmp_path):
    spec = write_spec(tmp_path, "drafts", DRAFTS)
    result = ok("spec", "compile", spec)
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["combo_id", "draft_template", "draft_llm", "draft_replicate"]
    assert rows[1:] == [
        [combo, "rolling-idea", "offline-small", rep]
        for combo in DRAFTS["axes"]["combo_id"]
        for rep in ("1", "2")
    ]
    assert result.stderr == ""


def test_spec_compile_jsonl_and_limit(tmp_path):
    spec = write_spec(tmp_path, "drafts", DRAFTS)
    result = ok("spec", "compile", spec, "--format", "jsonl", "--limit", "2")
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {
            "combo_id": "fungal-market",
            "draft_template": "rolling-idea",
            "draft_llm": "offline-small",
            "draft_replicate": rep,
        }
        for rep in (1, 2)
    ]
    assert result.stderr == "... 4 more row(s) not shown (--limit 2)\n"
    # --limit 0 means all rows.
    assert len(ok("spec", "compile", spec, "--limit", "0").stdout.splitlines()) == 1 + 6


def test_spec_compile_out_takes_the_format_from_the_suffix(tmp_path):
    spec = write_spec(tmp_path, "drafts", DRAFTS)
    out = tmp_path / "rows.jsonl"
    result = ok("spec", "compile", spec, "--out", out)
    assert result.stdout == ""
    assert result.stderr == f"6 row(s) written to {out}\n"
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6 and json.loads(lines[-1])["combo_id"] == "drifting-tides"
    out = tmp_path / "rows.csv"
    result = ok("spec", "compile", spec, "--out", out, "--limit", "3")
    assert out.read_text(encoding="utf-8").splitlines() == [
        "combo_id,draft_template,draft_llm,draft_replicate",
        "fungal-market,rolling-idea,offline-small,1",
        "fungal-market,rolling-idea,offline-small,2",
        "memory-codes,rolling-idea,offline-small,1",
    ]
    assert result.stderr.splitlines()[0] == f"3 row(s) written to {out}"
    # An explicit --format wins over the suffix.
    out = tmp_path / "rows.txt"
    ok("spec", "compile", spec, "--out", out, "--format", "jsonl")
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["draft_replicate"] == 1


def test_spec_compile_with_a_seed_shuffles_the_same_rows(tmp_path):
    spec = write_spec(tmp_path, "drafts", DRAFTS)
    plain = ok("spec", "compile", spec).stdout.splitlines()
    seeded = ok("spec", "compile", spec, "--seed", "7").stdout.splitlines()
    assert seeded == ok("spec", "compile", spec, "--seed", "7").stdout.splitlines()
    assert seeded[0] == plain[0] and sorted(seeded[1:]) == sorted(plain[1:])
    assert seeded[1:] != plain[1:]


# ------------------------------------------------------------------ catalog list


def test_catalog_list_everything(db):
    out = ok("catalog", "list", "--db", db).stdout.splitlines()
    headers = [line for line in out if line.startswith("# ")]
    assert headers == [f"# {kind} ({n})" for kind, n in SIZES.items()]
    assert len(out) == 4 + N


def test_catalog_list_one_kind(db):
    out = ok("catalog", "list", "combos", "--db", db).stdout.splitlines()
    assert out == sorted(
        f"{c.combo_id}  {c.level}  {', '.join(c.concept_ids)}" for c in CATALOG.combos
    )
    assert "fungal-market  paragraph  mycelial-networks, market-making" in out
    templates = ok("catalog", "list", "templates", "--db", db).stdout.splitlines()
    stages = ("draft", "essay", "evaluation")
    assert [line.split("  ")[:2] for line in templates] == sorted(
        ([t.stage, t.template_id] for t in CATALOG.templates),
        key=lambda pair: (stages.index(pair[0]), pair[1]),
    )
    assert templates[0].split("  ")[:2] == ["draft", "free-notes"]


def test_catalog_list_json(db):
    models = json.loads(ok("catalog", "list", "models", "--json", "--db", db).stdout)
    assert [m["model_id"] for m in models] == sorted(m.model_id for m in CATALOG.models)
    sonnet = next(m for m in models if m["model_id"] == "sonnet-4.5")
    assert (sonnet["provider"], sonnet["provider_model"], sonnet["pool"]) == (
        "openrouter",
        "anthropic/claude-sonnet-4.5",
        "openrouter",
    )
    everything = json.loads(ok("catalog", "list", "--json", "--db", db).stdout)
    assert list(everything) == ["concepts", "combos", "templates", "models"]
    assert {kind: len(rows) for kind, rows in everything.items()} == SIZES


def test_catalog_list_rejects_an_unknown_kind(db):
    result = invoke("catalog", "list", "widgets", "--db", db)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_reader_holding_a_snapshot_grows_the_wal_until_it_ends_and_a_checkpoint_resets_it(
    tmp_path, monkeypatch
):
    """Reliability T8: a long-lived reader keeps SQLite from resetting the write-ahead log;
    status warns, a checkpoint names the cause while the reader lasts, and resets the log
    once it has ended."""
    from daydream.db import connection, files
    from daydream.db.texts import put_text
    from daydream.db.transaction import transaction

    db = tmp_path / "wal.db"
    connection.connect(db).close()
    monkeypatch.setattr(files, "WAL_WARN_BYTES", 5 * 2**20)  # SQLite resets at ~4 MB
    monkeypatch.setattr(connection, "WAL_KEEP_BYTES", 2**20)
    keeper = connection.connect(db)  # an idle worker: the log file outlives the other connections
    reader = sqlite3.connect(db)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()  # holds its snapshot
    writer = connection.connect(db)
    for i in range(80):  # ~8 MB of texts, one transaction each, as workers write
        with transaction(writer):
            put_text(writer, f"{i} " + "x" * 100_000)
    writer.close()
    assert files.wal_bytes(db) > 7 * 2**20  # not reset: the reader still needs old pages
    runner = CliRunner()
    status = runner.invoke(cli, ["status", "--db", str(db)])
    assert status.exit_code == 0
    assert "warning: the write-ahead log is" in status.stderr
    assert f"daydream db checkpoint --db {db}" in status.stderr
    blocked = runner.invoke(cli, ["db", "checkpoint", "--db", str(db)])
    assert blocked.exit_code == 1
    assert "another connection still uses it (a reader of an older snapshot" in blocked.stderr
    reader.rollback()
    reader.close()
    # With the reader gone, SQLite's own checkpoints reset the log as writes go on, and
    # the file is cut back to WAL_KEEP_BYTES, so the warning goes away by itself.
    writer = connection.connect(db)
    for i in range(30):
        with transaction(writer):
            put_text(writer, f"after {i} " + "y" * 100_000)
    assert files.wal_bytes(db) < 5 * 2**20
    assert "warning" not in runner.invoke(cli, ["status", "--db", str(db)]).stderr
    writer.close()
    done = runner.invoke(cli, ["db", "checkpoint", "--db", str(db)])
    keeper.close()
    assert done.exit_code == 0, done.output
    assert "checkpointed and reset" in done.stdout
    assert files.wal_bytes(db) == 0
    quiet = runner.invoke(cli, ["status", "--db", str(db)])
    assert "warning" not in quiet.stderr
    assert json.loads(runner.invoke(cli, ["status", "--db", str(db), "--json"]).stdout)[
        "wal_bytes"
    ] == 0


def test_a_run_missing_an_api_key_stops_before_any_call_in_one_line(tmp_path, db):
    """The key a cohort's model needs is checked before the workers start (it used to fail
    every generation of that model as an unexpected error, exit 0); a rehearsal names it;
    a rehearsal of a misspelt cohort is the usual error."""
    spec = write_spec(tmp_path, "real", {"axes": {**DRAFTS["axes"], "draft_llm": ["sonnet-4.5"]}})
    ok("plan", spec, "--cohort", "real", "--db", db)
    before = events_in(db)
    no_key = {"OPENROUTER_API_KEY": None}
    result = CliRunner().invoke(cli, ["run", "real", "--db", str(db)], env=no_key)
    message = "provider openrouter: OPENROUTER_API_KEY is not set (export it or put it in .env)"
    assert (result.exit_code, result.stderr) == (1, f"Error: {message}\n"), result.output
    assert events_in(db) == before
    rehearsal = CliRunner().invoke(cli, ["run", "real", "--rehearse", "--db", str(db)], env=no_key)
    assert rehearsal.exit_code == 1
    assert f"a real run would stop before its first call:\n    {message}" in rehearsal.stdout
    typo = invoke("run", "reel", "--rehearse", "--db", db)
    assert typo.exit_code == 1 and typo.stderr.startswith('Error: cohort "reel" does not exist')
    offline = CliRunner().invoke(cli, ["run", "real", "--offline", "--db", str(db)], env=no_key)
    assert offline.exit_code == 0, offline.output  # the offline provider needs no key


def test_run_refuses_a_misspelt_pool_or_provider_and_writes_nothing(tmp_path, db):
    ok("plan", write_spec(tmp_path, "drafts", DRAFTS), "--cohort", "c", "--db", db)
    before = events_in(db)
    for option, value, message in [
        ("--pool-limit", "ofline=4", "no generation is in pool 'ofline' (pools: offline)"),
        ("--base-url", "olama=http://localhost:1/v1", "no model of the catalog uses provider 'olama'"),
    ]:
        result = invoke("run", "c", option, value, "--db", db)
        assert result.exit_code == 2, result.output
        assert f"Invalid value for {option}: {message}" in result.stderr
        assert "Traceback" not in result.output
    assert events_in(db) == before


def test_cancel_says_which_generations_it_keeps_for_other_cohorts(tmp_path, db):
    spec = write_spec(tmp_path, "drafts", DRAFTS)
    ok("plan", spec, "--cohort", "c1", "--db", db)
    ok("plan", spec, "--cohort", "c2", "--db", db)
    total = sqlite3.connect(db).execute("SELECT count(*) FROM generations").fetchone()[0]
    first = ok("cancel", "c1", "--db", db)
    assert first.stdout == (
        f"0 generation(s) cancelled; {total} unfinished kept: cohort(s) c2 still need them\n"
    )
    assert ok("cancel", "c2", "--db", db).stdout == f"{total} generation(s) cancelled\n"


def test_provider_checks_cover_only_what_will_run(tmp_path, db):
    """A worker of one pool needs only that pool's providers (a GPU box without the hosted
    API's key); resuming with the same --base-url options after that provider's calls are
    done is fine; a rehearsal checks the --base-url it is given."""
    axes = {**DRAFTS["axes"], "draft_llm": ["sonnet-4.5", "offline-small"]}
    spec = write_spec(tmp_path, "mixed", {"axes": axes})
    ok("plan", spec, "--cohort", "m", "--db", db)
    no_key = {"OPENROUTER_API_KEY": None}
    local = CliRunner().invoke(
        cli, ["worker", "--db", str(db), "--cohort", "m", "--pool", "offline"], env=no_key
    )
    assert local.exit_code == 0, local.output
    bad = CliRunner().invoke(
        cli,
        ["run", "m", "--rehearse", "--db", str(db), "--base-url", "openrouter=ftp://nope"],
        env={"OPENROUTER_API_KEY": "sk-test"},
    )
    assert bad.exit_code == 1
    assert "provider openrouter: base_url 'ftp://nope' must be an http:// or https://" in bad.stdout
    urls = ["--base-url", "offline=http://127.0.0.1:9/v1"]
    again = CliRunner().invoke(
        cli, ["run", "m", "--offline", "--db", str(db), *urls], env=no_key
    )
    assert again.exit_code == 0, again.output  # offline's calls are done; same options
