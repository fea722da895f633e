"""Mutation testing of daydream's core: how many small bugs would the tests catch?

    python benchmarks/mutation.py                        # every core module (hours)
    python benchmarks/mutation.py daydream.ids           # one module (or a path: daydream/ids.py)
    python benchmarks/mutation.py --survivors daydream.ids  # the survivors again (new tests)
    python benchmarks/mutation.py --report               # the last results, without a run
    python benchmarks/mutation.py --report --json        # the same, for machines
    python benchmarks/mutation.py MODULE --recheck TEST...  # survivors vs tests mutmut missed
    python benchmarks/mutation.py daydream.ids --deselect TEST...  # a run without these tests

Needs the ``mutation`` extra (``pip install -e '.[test,mutation]'``): mutmut 3. mutmut
copies the package into ``mutants/`` with every function rewritten as a trampoline to its
original or to one of its mutants (chosen by the environment variable
``MUTANT_UNDER_TEST``, which worker processes inherit), runs the suite once to learn
which tests call which function, then runs each mutant against only those tests. The
core modules are ``[tool.mutmut] only_mutate`` in pyproject.toml; docs/testing.md says
why each is in it, records the last figures, and lists the equivalent mutants (a mutant
that changes nothing observable), which count as detected here.

The report gives per module: mutants, killed (a test failed, or the tests ran past their
time limit), equivalent, survived, no tests (no test calls the mutated function in the
test process; a function that only worker subprocesses run shows up here), and the
score: (killed + equivalent) / mutants. Then every surviving mutant by name; ``mutmut
show NAME`` prints its diff. Results are kept in ``mutants/`` (delete it to start over):
a second run goes on with the mutants not checked yet (mutmut itself re-tests those of
functions that changed since), and ``--survivors`` runs the survivors again, once new
tests are in (mutmut first learns which functions the new tests call).

mutmut learns which tests call a function in the test process only: a function that a
test runs only inside a worker subprocess is not linked to that test, so its mutants may
survive mutmut's run although a worker-process test kills them (the subprocesses do run
the mutant: they inherit ``MUTANT_UNDER_TEST`` and import the ``mutants/`` copy). And a
run tests each mutant with the tests as they were when it started. ``--recheck TEST...``
runs each survivor of the modules against those tests (pytest node ids or files, as
they are now) and keeps the ones they kill in ``mutants/rechecked.json``; the report
counts them as "killed on recheck".

``--deselect TEST...`` leaves tests (pytest node ids, or a file: every test in it) out of
a run, through ``PYTEST_ADDOPTS`` rather than ``[tool.mutmut]``: a change of mutmut's own
test options resets every result it holds, of every module. mutmut's first pass runs
every test linked to the mutated functions unmutated and stops the run if one fails, so a
test that fails now and then under load (a timing test) can stop a run before any mutant
is tested. A narrower run is a different measure: ``mutants/deselected.json`` keeps, per
module, the tests its runs left out, and the report names them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the mutation extra installs tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
RECHECKED = ROOT / "mutants" / "rechecked.json"
DESELECTED = ROOT / "mutants" / "deselected.json"
TESTING_DOC = ROOT / "docs" / "testing.md"
# "- `daydream.ids.x_base36__mutmut_3`: why it changes nothing" in docs/testing.md
EQUIVALENT = re.compile(r"^- `(daydream\.[\w.ǁ]+__mutmut_\d+)`: (.+)$", re.M)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="daydream.queue.leases or its path")
    parser.add_argument("--report", action="store_true", help="only report the last results")
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.add_argument(
        "--survivors", action="store_true", help="run the survivors again (after new tests)"
    )
    parser.add_argument(
        "--recheck", nargs="+", metavar="TEST", help="run the survivors against these tests"
    )
    parser.add_argument(
        "--max-children", type=int, default=1, help="mutants tested at once (default 1)"
    )
    parser.add_argument(
        "--deselect", nargs="+", default=[], metavar="TEST", help="leave these tests out of the run"
    )
    args = parser.parse_args(argv)
    core = core_modules()
    try:
        modules = [module_name(m, core) for m in args.modules] or core
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    if args.recheck:
        recheck(modules, args.recheck)
    elif not args.report:
        done = run_mutmut(modules, args.max_children, args.survivors, args.deselect)
        if done != 0:
            print(f"Error: mutmut run exited with {done} (its output is above)", file=sys.stderr)
            return done
    rows = report(modules, equivalent_mutants())
    print(json.dumps(rows, indent=2) if args.json else format_report(rows))
    return 0


def core_modules() -> list[str]:
    """The core's modules, dotted, from ``[tool.mutmut] only_mutate``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    paths = config["tool"]["mutmut"]["only_mutate"]
    return [path.removesuffix(".py").replace("/", ".") for path in paths]


def module_name(given: str, core: list[str]) -> str:
    """``daydream/ids.py`` or ``daydream.ids`` -> ``daydream.ids``, if it is in the core."""
    name = given.removesuffix(".py").replace("/", ".").strip(".")
    if name not in core:
        raise ValueError(
            f"{given} is not a core module ([tool.mutmut] only_mutate in pyproject.toml: "
            f"{', '.join(core)})"
        )
    return name


def run_mutmut(
    modules: list[str], children: int, survivors: bool = False, deselect: list[str] | None = None
) -> int:
    """``mutmut run`` on the mutants of ``modules`` not checked yet (all of them the first
    time; with ``survivors``, those that survived), from the repository root, without the
    tests in ``deselect``."""
    mutmut = Path(sys.executable).parent / "mutmut"
    if not mutmut.exists():
        print("Error: mutmut is not installed: pip install -e '.[test,mutation]'", file=sys.stderr)
        return 2
    wanted = ("survived", "no tests") if survivors else ("not checked",)
    codes = {module: _exit_codes(module) for module in modules}
    equivalent = equivalent_mutants()  # no need to run them: nothing can kill them
    names = [f"{module}.*" for module in modules if not codes[module]]
    names += [
        name
        for module in modules
        for name, code in codes[module].items()
        if _status(code) in wanted and name not in equivalent
    ]
    if not names:
        print("Nothing to run: every mutant of these modules has a result (--report shows it)")
        return 0
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if deselect:
        left_out = _deselected()
        for module in modules:
            left_out[module] = sorted({*left_out.get(module, []), *deselect})
        DESELECTED.parent.mkdir(exist_ok=True)
        DESELECTED.write_text(json.dumps(left_out, indent=2, sort_keys=True))
        options = " ".join(f"--deselect={test}" for test in deselect)
        env["PYTEST_ADDOPTS"] = f"{env.get('PYTEST_ADDOPTS', '')} {options}".strip()
    return subprocess.run(
        [str(mutmut), "run", "--max-children", str(children), *names], cwd=ROOT, env=env
    ).returncode


def _exit_codes(module: str) -> dict[str, int | None]:
    """mutmut's result per mutant of ``module`` (None: not checked), or {} before a run."""
    meta = ROOT / "mutants" / (module.replace(".", "/") + ".py.meta")
    return json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}


def recheck(modules: list[str], tests: list[str]) -> None:
    """Run every survivor of ``modules`` against ``tests``; keep those killed."""
    shutil.copytree(ROOT / "tests", ROOT / "mutants" / "tests", dirs_exist_ok=True)
    rechecked = _rechecked()
    survivors = [
        s["mutant"]
        for row in report(modules, equivalent_mutants())
        for s in row["survivors"]
    ]
    for number, mutant in enumerate(survivors, 1):
        env = {**os.environ, "MUTANT_UNDER_TEST": mutant, "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=ROOT / "mutants",
            env=env,
            capture_output=True,
        )
        killed = done.returncode == 1
        print(f"{number}/{len(survivors)} {mutant}: {'killed' if killed else 'survived'}")
        if killed:
            rechecked[mutant] = " ".join(tests)
            RECHECKED.write_text(json.dumps(rechecked, indent=2, sort_keys=True))


def _rechecked() -> dict[str, str]:
    return json.loads(RECHECKED.read_text()) if RECHECKED.exists() else {}


def _deselected() -> dict[str, list[str]]:
    return json.loads(DESELECTED.read_text()) if DESELECTED.exists() else {}


def equivalent_mutants() -> dict[str, str]:
    """Mutant name -> why it is equivalent, as docs/testing.md lists them."""
    if not TESTING_DOC.exists():
        return {}
    return dict(EQUIVALENT.findall(TESTING_DOC.read_text(encoding="utf-8")))


def report(modules: list[str], equivalent: dict[str, str]) -> list[dict]:
    """Per module: the counts by status, the score and the surviving mutants."""
    rows = []
    rechecked = _rechecked()
    deselected = _deselected()
    for module in modules:
        codes = _exit_codes(module)
        counts: Counter[str] = Counter()
        survivors = []
        for name, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
            status = _status(code)
            if status in ("survived", "no tests", "not checked") and name in equivalent:
                status = "equivalent"
            elif status in ("survived", "no tests") and name in rechecked:
                status = "killed on recheck"
            counts[status] += 1
            if status in ("survived", "no tests"):
                survivors.append({"mutant": name, "status": status})
        total = sum(counts.values())
        detected = sum(counts[k] for k in DETECTED)
        rows.append(
            {
                "module": module,
                "mutants": total,
                **{k: counts[k] for k in COUNTED},
                "not checked": counts["not checked"],
                "score": round(100 * detected / total, 1) if total else None,
                "survivors": survivors,
                "deselected": deselected.get(module, []),
            }
        )
    return rows


COUNTED = ("killed", "killed on recheck", "equivalent", "survived", "no tests")
DETECTED = ("killed", "killed on recheck", "equivalent")


def _status(code: int | None) -> str:
    """killed, survived, no tests or not checked, from mutmut's exit code for a mutant."""
    if code is None:
        return "not checked"
    from mutmut.stats import status_by_exit_code

    status = status_by_exit_code[code]
    if status in ("killed", "timeout", "caught by type check", "segfault"):
        return "killed"  # a timeout: the tests ran past their limit, the mutant broke them
    return status if status in ("survived", "no tests") else "not checked"


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


def format_report(rows: list[dict]) -> str:
    columns = ("mutants", *COUNTED, "not checked")
    heads = ("mutants", "killed", "rechecked", "equivalent", "survived", "no tests", "unchecked")
    width = max(len(row["module"]) for row in rows)
    lines = [f"{'module':<{width}}  " + "  ".join(f"{c:>11}" for c in heads) + "  score"]
    for row in rows:
        score = "-" if row["score"] is None else f"{row['score']:.1f}%"
        cells = "  ".join(f"{row[c]:>11}" for c in columns)
        lines.append(f"{row['module']:<{width}}  {cells}  {score:>5}")
    total = {c: sum(row[c] for row in rows) for c in columns}
    if len(rows) > 1 and total["mutants"]:
        detected = sum(total[k] for k in DETECTED)
        cells = "  ".join(f"{total[c]:>11}" for c in columns)
        lines.append(f"{'all':<{width}}  {cells}  {100 * detected / total['mutants']:.1f}%")
    for row in rows:
        if row["deselected"]:
            lines.append(f"\n{row['module']}: measured without")
            lines.extend(f"  {test}" for test in row["deselected"])
    for row in rows:
        if row["survivors"]:
            lines.append(f"\n{row['module']}: survived ({len(row['survivors'])})")
            lines.extend(f"  {s['mutant']}  ({s['status']})" for s in row["survivors"])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
