"""What a bad input gets: a value, a file or a database that daydream cannot use ends in
one ``Error:`` line naming it and the fix, a documented exit code (2 for a bad option
value, 1 otherwise), no traceback, and the database unchanged. Files daydream writes stay
inside their directory and are never written through a planted link.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from daydream.cli import cli
from daydream.db.connection import connect, is_daydream_database
from daydream.demo import run_demo
from daydream.errors import ConfigError, PlanError
from daydream.results.curation import rank_essays
from daydream.results.files import UniqueNames, safe_name
from daydream.worker.config import WorkerConfig
from tests.invariants import log_snapshot
from tests.scenario import TEMPLATES, cohort, offline_model, query, run, worker_cmd

MEGABYTE_VALUE = "x" * 1_000_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    run_demo(path, out=lambda _: None, err=lambda _: None)
    return path


@pytest.fixture
def db(demo: Path, tmp_path: Path) -> Path:
    """A copy of the demo database (its cohort "demo" done) for one test."""
    path = tmp_path / "demo.db"
    shutil.copyfile(demo, path)
    return path


def refused(args: list[str], db: Path, *, code: int) -> str:
    """Run ``daydream ARGS`` expecting it to refuse: exit ``code``, its error on the last
    line of stderr (click puts a usage line above a bad option's), no traceback, and the
    database's log unchanged. Returns the error line."""
    before = log_snapshot(db) if is_daydream_database(db) else None
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    if code == 1:
        assert len(lines) == 1, result.stderr
    assert lines[-1].startswith("Error: ")
    assert len(lines[-1]) < 600  # long values are quoted by a short prefix
    if before is not None:
        assert log_snapshot(db) == before
    return lines[-1]


# --- numeric options --------------------------------------------------------------------

BAD_OPTIONS = [
    (["run", "demo", "--timeout", "nan"], "Invalid value for '--timeout': 'nan' is not a number"),
    (["run", "demo", "--timeout", "inf"], "Invalid value for '--timeout': inf is not in the range"),
    (["run", "demo", "--timeout", "0"], "Invalid value for '--timeout': 0.0 is not in the range"),
    (["run", "demo", "--lease", "inf"], "Invalid value for '--lease': inf is not in the range"),
    (["worker", "--lease", "nan"], "Invalid value for '--lease': 'nan' is not a number"),
    (["run", "demo", "--grace", "-1"], "Invalid value for '--grace': -1.0 is not in the range"),
    (["worker", "--offline-latency", "nan"], "'--offline-latency': 'nan' is not a number"),
    (["run", "demo", "-c", str(10**20)], f"'-c': {10**20} is not in the range 1<=x<=10000"),
    (["run", "demo", "--max-attempts", "0"], "'--max-attempts': 0 is not in the range"),
    (["run", "demo", "--workers", str(10**30)], "'--workers' / '-w': 1000000000000000000000000"),
    (["run", "demo", "--pool-limit", f"offline={10**30}"], "with N from 1 to 100000"),
    (["run", "demo", "--pool-limit", "offline=\u00b2"], "with N from 1 to 100000"),
    (["run", "demo", "--pool-limit", "offline=0"], "with N from 1 to 100000"),
    (["events", "--after", str(10**20)], "'--after': 100000000000000000000 is not in the range"),
    (["events", "--limit", "-1"], "'--limit': -1 is not in the range"),
    (["top", "demo", "--template", "novelty-rubric", "-n", str(10**20)], "'-n' / '--top-n'"),
    (["top", "demo", "--template", "novelty-rubric", "--span", "nan"], "'nan' is not a number"),
    (["parse", "score", "-", "--scale", "0", "inf"], "'--scale': inf is not in the range"),
    (["spec", "compile", "x.yaml", "--seed", str(10**30)], "'--seed': 10000000000000000000000"),
]


@pytest.mark.parametrize("args, expected", BAD_OPTIONS, ids=lambda v: " ".join(v)[:40])
def test_a_numeric_option_out_of_its_range_is_a_usage_error_before_anything_is_written(
    db, args, expected
):
    assert expected in refused(
        [*args, "--db", str(db)] if args[0] != "parse" and args[0] != "spec" else args, db, code=2
    )


@pytest.mark.parametrize(
    "setting, value",
    [
        ("lease_s", math.inf),
        ("lease_s", math.nan),
        ("timeout_s", math.nan),
        ("grace_s", -1.0),
        ("concurrency", 10**30),
        ("max_attempts", True),
        ("queue", 10**9),
    ],
)
def test_a_worker_config_refuses_a_setting_out_of_range_whoever_builds_it(setting, value):
    """The library checks what the command line checks: a spawned worker's JSON config, or
    a config a script builds, cannot carry nan seconds or an infinite lease either."""
    with pytest.raises(ConfigError) as info:
        WorkerConfig(db_path=Path("x.db"), **{setting: value})
    assert str(info.value).startswith(f"worker setting {setting}: ")
    text = json.dumps({**json.loads(WorkerConfig(db_path=Path("x.db")).to_json()), setting: value})
    with pytest.raises(ConfigError):
        WorkerConfig.from_json(text)


# --- files given to commands --------------------------------------------------------------


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


SPEC_TAIL = "  draft_template: [rolling-idea]\n  draft_llm: [offline-small]\n"


@pytest.mark.parametrize(
    "name, content, expected",
    [
        (
            "latin1.yaml",
            "axes:\n  combo_id: [caf\u00e9]\n".encode("latin-1"),
            "Error: spec {spec}: is not valid UTF-8 (byte 22); save it as UTF-8",
        ),
        (
            "utf16.yaml",
            "axes:\n  combo_id: [x]\n".encode("utf-16"),
            "Error: spec {spec}: is not valid UTF-8 (byte 0); save it as UTF-8",
        ),
        (
            "deep.yaml",
            "axes:\n  combo_id: " + "[" * 5000 + "]" * 5000 + "\n",
            "Error: spec {spec}: nested too deeply to read; a spec needs a few levels at most",
        ),
        (
            "bigint.json",
            '{"axes": {"combo_id": [' + "9" * 5000 + "]}}",
            # Python's own words follow: "(4300 digits)" from 3.11, "(4300) for integer
            # string conversion" on 3.10
            "Error: spec {spec}: holds a value it cannot read (Exceeds the limit (4300",
        ),
        (
            "replicate.yaml",
            f"axes:\n  combo_id: [fungal-market]\n{SPEC_TAIL}  draft_replicate: [{10**30}]\n",
            "Error: plan {spec}: row 1: draft_replicate: 1000000000000000000000000000000 is not"
            " a replicate number; use a whole number from 1 to 1,000,000 (first in row 1)",
        ),
        (
            "seed.yaml",
            f"axes:\n  combo_id: [fungal-market]\n{SPEC_TAIL}output:\n  seed: {10**30}\n",
            "Error: spec {spec}: output.seed: must be a whole number from 0 to"
            " 9223372036854775807 (got the number 1000000000000000000000000000000)",
        ),
        (
            "pool.yaml",
            f"axes:\n  combo_id: {{concepts: [a, b], k_min: 1, k_max: {10**23}}}\n{SPEC_TAIL}",
            "Error: spec {spec}: axes.combo_id.k_max: must be a whole number from 1 to 1000 (got"
            " the number 100000000000000000000000)",
        ),
        (
            "long.yaml",
            f"axes:\n  combo_id: [{MEGABYTE_VALUE}]\n{SPEC_TAIL}",
            'Error: plan {spec}: unknown combo "' + "x" * 59 + "... (1000002 characters)"
            " (define it in the catalog's combos and import it with: daydream catalog import"
            " DIR) (first in row 1)",
        ),
    ],
)
def test_a_spec_daydream_cannot_read_is_one_line_and_plans_nothing(
    db, tmp_path, name, content, expected
):
    spec = write(tmp_path / name, content)
    line = refused(["plan", str(spec), "--cohort", "bad", "--db", str(db)], db, code=1)
    assert line.startswith(expected.format(spec=spec))


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            b"essay_gen_id,selected\ncaf\xe9,true\n",
            "is not valid UTF-8 (byte 25); save it as UTF-8",
        ),
        (
            b"essay_gen_id,selected\nx\x00y,true\n",
            # Python 3.10's csv module refuses a NUL byte; from 3.11 it reads it
            'essay_id "x\\x00y" is not an existing essay generation (first in row 1)'
            if sys.version_info >= (3, 11)
            else ": is not a CSV file (line contains NUL); give the list top wrote",
        ),
    ],
)
def test_a_selection_list_daydream_cannot_read_is_one_printable_line(
    db, tmp_path, content, expected
):
    selection = write(tmp_path / "top.csv", content)
    args = ["plan", "--from-list", str(selection), "--cohort", "c", "--judge", "a:b"]
    assert refused([*args, "--db", str(db)], db, code=1).endswith(expected)


@pytest.mark.parametrize(
    "args", [["worker", "--offline", "--cohort", "nope"], ["run", "nope"]], ids=["worker", "run"]
)
def test_a_cohort_that_does_not_exist_is_refused_not_run_as_an_idle_worker(db, args):
    line = refused([*args, "--db", str(db)], db, code=1)
    assert line == (
        'Error: cohort "nope" does not exist (cohorts: demo; plan one with:'
        " daydream plan SPEC --cohort ID)"
    )


def test_a_binary_file_given_to_parse_is_one_line(tmp_path, db):
    binary = write(tmp_path / "reply.bin", bytes(range(256)) * 4)
    line = refused(["parse", "score", str(binary)], db, code=1)
    assert line == (
        f"Error: {binary}: not UTF-8 text (byte 128); give a saved model reply as UTF-8 text"
    )


def test_a_megabyte_option_value_is_quoted_by_a_short_prefix(db):
    line = refused(["status", MEGABYTE_VALUE, "--db", str(db)], db, code=1)
    assert line.startswith('Error: cohort "' + "x" * 59 + "... (1000002 characters) does not")


# --- databases that are not daydream's ----------------------------------------------------


def foreign_database(path: Path) -> str:
    """An SQLite file of someone else's (a table of notes); returns its bytes' digest."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('mine')")
    conn.commit()
    conn.close()
    return digest(path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["db", "init"],
        ["db", "rebuild"],
        ["events"],
        ["catalog", "import", "{catalog}"],
        ["run"],
        ["report", "demo"],
    ],
    ids=lambda args: " ".join(args),
)
def test_an_sqlite_file_that_is_not_daydreams_is_refused_and_left_unchanged(tmp_path, args):
    other = tmp_path / "other.db"
    before = foreign_database(other)
    catalog = str(Path(__file__).resolve().parents[1] / "specs" / "catalog")
    args = [arg.format(catalog=catalog) for arg in args]
    line = refused([*args, "--db", str(other)], other, code=1)
    assert line == (
        f"Error: database {other}: an SQLite database that is not daydream's (tables"
        " 'notes'); left unchanged: give --db a new or empty file"
    )
    assert digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]  # no -wal, no -shm


def test_an_empty_or_new_file_becomes_a_daydream_database(tmp_path):
    empty, new = tmp_path / "empty.db", tmp_path / "new.db"
    empty.touch()
    for path in (empty, new):
        result = CliRunner().invoke(cli, ["db", "init", "--db", str(path)])
        assert result.exit_code == 0, result.output
        assert is_daydream_database(path)


# --- catalog entries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, expected",
    [
        (
            {"extra": {"stream": True}},
            "extra: may not set stream: daydream sets the model and the messages itself and"
            " reads whole replies, not streams; remove it",
        ),
        (
            {"extra": {"model": "other", "top_p": 0.9}},
            "extra: may not set model: daydream sets the model and the messages itself and"
            " reads whole replies, not streams; remove it",
        ),
        ({"seed": 10**30}, "seed: Input should be less than or equal to 9223372036854775807"),
        ({"max_tokens": 10**12}, "max_tokens: Input should be less than or equal to 10000000"),
        ({"temperature": math.inf}, "temperature: Input should be a finite number"),
        (
            {"extra": {"top_k": 10**30}},
            "extra: must hold plain JSON values; it holds an integer beyond 64 bits",
        ),
    ],
)
def test_a_model_the_worker_could_never_call_is_refused_at_import(db, tmp_path, fields, expected):
    catalog = tmp_path / "catalog"
    shutil.copytree(Path(__file__).resolve().parents[1] / "specs" / "catalog", catalog)
    import yaml

    models = yaml.safe_load((catalog / "models.yaml").read_text())
    models[0].update(fields)
    (catalog / "models.yaml").write_text(yaml.safe_dump(models))
    line = refused(["catalog", "import", str(catalog), "--db", str(db)], db, code=1)
    assert line.startswith(f'Error: catalog {catalog / "models.yaml"}: [0] model "')
    assert expected in line


@pytest.mark.parametrize("extra", [{"stream": True}, {"messages": []}, {"top_k": 10**30}])
def test_a_template_extra_the_worker_could_never_send_is_refused_at_import(
    db, tmp_path, extra
):
    """A template's ``extra`` goes into the same request body as a model's: the same keys
    are reserved and the same values refused."""
    catalog = tmp_path / "catalog"
    shutil.copytree(Path(__file__).resolve().parents[1] / "specs" / "catalog", catalog)
    import yaml

    templates = yaml.safe_load((catalog / "templates.yaml").read_text())
    stage = next(iter(templates))
    templates[stage][0]["extra"] = extra
    (catalog / "templates.yaml").write_text(yaml.safe_dump(templates))
    line = refused(["catalog", "import", str(catalog), "--db", str(db)], db, code=1)
    assert line.startswith(f'Error: catalog {catalog / "templates.yaml"}: ')
    assert "extra: " in line


# --- templates ------------------------------------------------------------------------------


RECURSIVE = "[gen {{ gen_id }}]\n{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"
NESTED = "[gen {{ gen_id }}]\n{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"


def loop_cohort(root: Path, body: str) -> Path:
    templates: dict[str, Any] = {**TEMPLATES, "draft": [{"id": "loop", "parser": "identity"}]}
    return cohort(
        root,
        [offline_model()],
        axes={"draft_template": ["loop"]},
        templates=templates,
        bodies={("draft", "loop"): body},
    )


def test_a_template_that_recurses_fails_as_a_template_error_in_a_worker(tmp_path):
    db = loop_cohort(tmp_path, RECURSIVE)
    done = run(worker_cmd(db))
    assert "Traceback" not in done.stderr
    rows = query(db, "SELECT status, state, error FROM generations WHERE stage = 'draft'")
    error = (
        "template draft/loop: line 2: recursion too deep (a macro or include that calls itself?)"
    )
    assert rows == [("failed", "template_error", error)] * 2


def test_a_template_nested_too_deeply_to_compile_is_refused_when_planned(tmp_path):
    with pytest.raises(PlanError) as info:
        loop_cohort(tmp_path, NESTED)
    assert str(info.value) == (
        f"plan {tmp_path / 'spec.yaml'}: template draft/loop: nested too deeply to compile;"
        " flatten its expressions (first in row 1)"
    )


# --- files written --------------------------------------------------------------------------


def test_safe_names_are_short_clean_and_keep_distinct_ids_apart():
    ids = ["e_abc123", "e_" + "x" * 400, "e_" + "x" * 401, "e_new\nline", "e_new_line", "../up"]
    names = [safe_name(i) for i in ids]
    assert names[0] == "e_abc123"  # a safe id is its own name
    assert len(set(names)) == len(names)
    for name in names:
        assert len(name) <= 120 and "/" not in name and "\n" not in name
        assert not name.startswith(".")
    unique = UniqueNames()
    assert [unique.take("a", ".md"), unique.take("a", ".md"), unique.take("A", ".md")] == [
        "a.md",
        "a-2.md",
        "A-3.md",
    ]


def test_a_link_planted_in_a_report_directory_is_replaced_not_followed(db, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "report"
    out.mkdir()
    for name in ("evaluation_scores.csv", "report.html"):
        (out / name).symlink_to(victim)
    result = CliRunner().invoke(
        cli, ["report", "demo", "--db", str(db), "--out", str(out), "--html"]
    )
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious\n"
    for name in ("evaluation_scores.csv", "report.html"):
        assert not (out / name).is_symlink()
    assert (out / "evaluation_scores.csv").read_text().startswith("gen_id,")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_link_planted_in_an_export_directory_is_replaced_not_followed(db, tmp_path):
    conn = connect(db)
    ranking = rank_essays(conn, "demo", "novelty-rubric", top_n=3)
    conn.close()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "top"
    out.mkdir()
    first = f"1-{ranking.rows[0]['essay_gen_id']}.md"
    (out / first).symlink_to(victim)
    result = CliRunner().invoke(
        cli,
        [
            "top",
            "demo",
            "--template",
            "novelty-rubric",
            "-n",
            "3",
            "--db",
            str(db),
            "--out",
            str(tmp_path / "top.csv"),
            "--export",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious\n"
    assert not (out / first).is_symlink()
    assert (out / first).read_text().startswith(f"# Essay {ranking.rows[0]['essay_gen_id']}")
    assert len(list(out.iterdir())) == 3
