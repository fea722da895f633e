"""Deriving a big plan's generations in a second process while the first one writes them.

A plan does two kinds of work: deriving generations from the spec's rows (ids are BLAKE2b
hashes written in base 36, de-duplication, batching: Python) and writing them (events and
projections: SQLite). For a million generations each takes seconds, and one process does
them one after the other. ``derived_elsewhere`` starts a process that runs
``derivation.derive_batches`` on the same spec and catalog and sends the batches back through a
pipe; the planning process writes batch N while batch N+1 is derived, on another core.
A thread would not do: the sqlite3 module releases the GIL around each row's step and has
to win it back from the deriving thread every time.

The child reads the database through its own read-only connection: it sees the catalog
as last committed, which is what the plan checks against (the planning transaction holds
the write lock, so nothing else can change it meanwhile); combinations the spec
enumerates from a concept pool are added to its registry as the planner adds them. What
it sends is exactly what ``derive_batches`` yields in process (the same batches in the
same order; ``tests/test_plan.py`` compares the events), and a planning problem comes back
as the same one-line PlanError. If the child dies, the plan fails with a clear error and
its transaction rolls back.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Generator
from typing import Any, BinaryIO

from daydream import spec as spec_module
from daydream.db.connection import connect
from daydream.errors import PlanError
from daydream.launch import python_command
from daydream.plan.derivation import derive_batches
from daydream.plan.registry import planning_registry
from daydream.plan.report import PlanReport

# Spec rows from which a plan derives in a second process (starting one costs ~0.5 s).
PIPELINE_ROWS = 200_000


def derived_elsewhere(
    db_path: str, spec_path: str, report: Any, size: int
) -> Generator[list[Any], None, None]:
    """``derivation.derive_batches`` for the spec at ``spec_path`` in batches of ``size``, run in
    another process.

    Sets ``report.rows`` when the last batch has arrived. The child is a fresh interpreter
    (``python -c``, importing this copy of daydream), never a fork of a process holding
    SQLite, and never a re-import of the caller's main module; batches come back pickled
    over its stdout, whose pipe also bounds how far it runs ahead of the writer.
    """
    # stderr goes to a file, not a pipe: a child that wrote much to an unread pipe would
    # block, and so would the planner waiting for its next batch.
    errors = tempfile.TemporaryFile()
    try:
        child = subprocess.Popen(
            python_command("daydream.plan.pipeline", db_path, spec_path, str(size)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    except BaseException:
        errors.close()
        raise
    assert child.stdout is not None
    try:
        while True:
            try:
                kind, payload = pickle.load(child.stdout)
            except EOFError:
                code = child.wait()
                errors.seek(0)
                detail = errors.read().decode("utf-8", "replace").strip().splitlines()
                raise PlanError(
                    f"plan {spec_path}: the process deriving its generations stopped (exit"
                    f" code {code}{': ' + detail[-1] if detail else ''}); nothing was planned"
                ) from None
            if kind == "batch":
                yield payload
            elif kind == "end":
                report.rows = payload
                return
            elif kind == "problem":
                raise PlanError(payload)
            else:
                raise RuntimeError(f"deriving the plan's generations failed:\n{payload}")
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
        errors.close()


def _derive(db_path: str, spec_path: str, size: int, out: BinaryIO) -> None:
    """The child: pickle ("batch", generations) for each batch, then ("end", rows)."""

    def send(kind: str, payload: Any) -> None:
        pickle.dump((kind, payload), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        spec = spec_module.load_spec(spec_path)
        conn = connect(db_path, readonly=True)
        derived = dict(getattr(spec, "derived_combos", {}) or {})
        registry, _ = planning_registry(conn, derived, spec_path)
        report = PlanReport(cohort_id="", spec_path=spec_path, dry_run=True)
        rows = spec_module.compile_rows(spec)
        for batch in derive_batches(conn, rows, registry, report, size):
            send("batch", [list(g) for g in batch])  # plain rows: cheaper to unpickle
        send("end", report.rows)
        conn.close()
    except PlanError as exc:
        send("problem", str(exc))
    except BrokenPipeError:
        pass  # the planner stopped reading (it failed or was interrupted)
    except BaseException:  # noqa: BLE001 - reported to the planner, which raises it
        send("error", traceback.format_exc())


def main() -> None:
    """The child's entry point: DB_PATH SPEC_PATH BATCH_SIZE in ``sys.argv``."""
    _derive(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.stdout.buffer)


if __name__ == "__main__":
    main()
