"""How ``daydream run`` starts its workers: a fork of itself where that is safe, else a
fresh interpreter (``daydream/launch.py``, ``daydream/runner/workers.py``).

Each test runs a small Python script in its own process (the test process may run threads
of its own) that plans nothing and calls ``run_cohort`` on a cohort planned here, then
reads the outcome from the database.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest
import yaml

from daydream.db.connection import connect
from tests.scenario import env, plan, query

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")

RUN = """
import json, sys
from daydream.runner.run import run_cohort
from daydream.worker.config import WorkerConfig
db = sys.argv[1]
config = WorkerConfig(db_path=db, cohort="k", concurrency=4, provider_override="offline")
summary = run_cohort(config, workers=2)
print(json.dumps({"started": summary.started, "remaining": summary.status.remaining,
                  "done": summary.status.count("done")}))
"""


def run_script(script: str, *args: str, environ: dict[str, str] | None = None) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True, text=True, timeout=120, env=environ or env(),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@linux_only
def test_workers_are_forked_and_finish_the_cohort(offline_cohort):
    db = offline_cohort()
    result, stderr = run_script(RUN, str(db))
    assert result["started"] == "fork"
    assert result["remaining"] == 0 and result["done"] == len(query(db, "SELECT 1 FROM generations"))
    # The workers print their summary lines to the inherited stderr. (A worker that finds
    # nothing left is stopped, maybe before it prints: one line at least.)
    assert " ok, 0 failed" in stderr, stderr


def test_a_worker_is_spawned_when_a_fork_is_not_safe(tmp_path, offline_cohort):
    """The database open in the starting process (by any library), another thread running,
    or DAYDREAM_WORKER_START=spawn: fresh interpreters, which finish the cohort the same."""
    cases = {
        "open": "import sqlite3; held = sqlite3.connect(sys.argv[1]); held.execute('SELECT 1')\n",
        "thread": "import threading, time; threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n",
        "env": "",
    }
    expected = {
        "open": "this process has",
        "thread": "1 other thread(s) run in this process",
        "env": "DAYDREAM_WORKER_START=spawn",
    }
    for name, prelude in cases.items():
        db = offline_cohort(root=tmp_path / name)
        environ = env(DAYDREAM_WORKER_START="spawn") if name == "env" else None
        script = RUN.replace("db = sys.argv[1]\n", "db = sys.argv[1]\n" + prelude)
        result, stderr = run_script(script, str(db), environ=environ)
        assert result["started"].startswith("spawn (") and expected[name] in result["started"], result
        assert result["remaining"] == 0
        assert " ok, 0 failed" in stderr, stderr


@linux_only
def test_fork_blocker_sees_the_database_and_its_wal_files_only(tmp_path, offline_cohort):
    """A connection to another database does not stop a fork; one to this database does,
    also through a symlink, and so does an open -wal file."""
    db = offline_cohort()
    other = tmp_path / "other.db"
    connect(other).close()
    link = tmp_path / "link.db"
    link.symlink_to(db)
    script = """
import json, sqlite3, sys
from daydream.launch import fork_blocker
db, other, link = sys.argv[1:4]
out = {"closed": fork_blocker(db)}
held = sqlite3.connect(other); held.execute("SELECT 1")
out["other open"] = fork_blocker(db)
wal = open(db + "-wal", "ab")
out["wal open"] = fork_blocker(db)
wal.close()
same = sqlite3.connect(link); same.execute("SELECT count(*) FROM generations").fetchone()
out["open through a link"] = fork_blocker(db)
same.close()
out["closed again"] = fork_blocker(db)
print(json.dumps(out))
"""
    result, _ = run_script(script, str(db), str(other), str(link))
    assert result["closed"] is None
    assert result["other open"] is None
    assert result["wal open"] and "has" in result["wal open"]
    assert result["open through a link"] and "has" in result["open through a link"]
    assert result["closed again"] is None


@linux_only
def test_a_forked_worker_reads_its_own_database_not_the_parents_cached_rows(
    tmp_path, offline_cohort
):
    """The starting process claimed a task in another database whose combos have the same
    ids but other concepts (leases caches them by id): the forked workers render their
    prompts from their own database."""
    first = offline_cohort(root=tmp_path / "first")
    second_root = tmp_path / "second"
    shutil.copytree(tmp_path / "first" / "catalog", second_root / "catalog")
    concepts_file = second_root / "catalog" / "concepts.yaml"
    concepts = yaml.safe_load(concepts_file.read_text())
    for concept in concepts:
        concept["name"] = "Renamed " + concept["name"]
    concepts_file.write_text(yaml.safe_dump(concepts))
    spec = tmp_path / "first" / "spec.yaml"
    second = second_root / "run.db"
    plan(second, second_root / "catalog", spec)
    script = """
import json, sys
from daydream.queue.leases import claim
from daydream.db.connection import connect
from daydream.worker.config import WorkerConfig
from daydream.runner.run import run_cohort
first, second = sys.argv[1:3]
conn = connect(first, create=False)
tasks = claim(conn, WorkerConfig(db_path=first, name="probe"), 10)
conn.close()
names = sorted({c.name for t in tasks if t.concepts for c in t.concepts[1]})
config = WorkerConfig(db_path=second, cohort="k", concurrency=4, provider_override="offline")
summary = run_cohort(config, workers=1)
print(json.dumps({"started": summary.started, "first": names, "remaining": summary.status.remaining}))
"""
    result, _ = run_script(script, str(first), str(second))
    assert result["started"] == "fork" and result["remaining"] == 0
    assert result["first"] and not any(n.startswith("Renamed") for n in result["first"])
    prompts = [
        row[0]
        for row in query(
            second,
            "SELECT x.text FROM generations g JOIN texts x ON x.hash = g.prompt_hash"
            " WHERE g.stage = 'draft'",
        )
    ]
    assert prompts and all("- Renamed " in prompt for prompt in prompts), prompts


@linux_only
def test_a_forked_worker_writes_to_the_inherited_stderr_not_a_redirected_one(offline_cohort):
    """``daydream run`` inside a CLI test runner (sys.stderr replaced by a buffer): the
    worker's output goes to file descriptor 2, as a fresh interpreter's would."""
    db = offline_cohort()
    script = RUN.replace(
        "summary = run_cohort(",
        "import io; sys.stderr = io.StringIO()\nsummary = run_cohort(",
    ).replace("workers=2", "workers=1")
    result, stderr = run_script(script, str(db))
    assert result["started"] == "fork"
    assert stderr.count(" ok, 0 failed") == 1, stderr


@linux_only
def test_a_forked_worker_sees_crash_points_set_after_daydream_was_imported(offline_cohort):
    """The crash-test switches are read from the environment when the worker starts, as
    a fresh interpreter reads them, not when the parent imported daydream."""
    db = offline_cohort()
    script = """
import json, os, sys
from daydream.runner.run import run_cohort
from daydream.worker.config import WorkerConfig
os.environ["DAYDREAM_CRASH_AT"] = "before_call"
config = WorkerConfig(db_path=sys.argv[1], cohort="k", provider_override="offline")
summary = run_cohort(config, workers=1, max_restarts=0)
print(json.dumps({"started": summary.started, "done": summary.status.count("done")}))
"""
    result, _ = run_script(script, str(db))
    assert result == {"started": "fork", "done": 0}  # it crashed before its first call


@linux_only
def test_a_forked_worker_starts_like_a_fresh_interpreter(tmp_path):
    """Its own session; the parent's Python signal handlers gone (an ignored signal stays
    ignored, as across exec); an exit code like Popen's, also when the child was reaped
    elsewhere."""
    report = tmp_path / "child"
    script = """
import json, os, signal, sys, time
from daydream.launch import Forked
report = sys.argv[1]
def handler(signum, frame):
    open(report + ".handled", "w").close()
signal.signal(signal.SIGUSR1, handler)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
def child(args):
    os.kill(os.getpid(), signal.SIGHUP)  # ignored: goes on
    with open(report + "-" + args[0], "w") as out:
        json.dump({"pid": os.getpid(), "sid": os.getsid(0)}, out)
    if args == ["usr1"]:
        os.kill(os.getpid(), signal.SIGUSR1)  # the default action: the process ends
    time.sleep(30)
code = Forked(lambda: child(["usr1"])).wait()
sleeper = Forked(lambda: child(["sleep"]))
deadline = time.monotonic() + 20
while not os.path.exists(report + "-sleep") and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.1)  # its report written and closed
os.kill(sleeper.pid, signal.SIGKILL)
sleeper.wait()
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
quiet = Forked(lambda: None)
while quiet.poll() is None:
    time.sleep(0.01)
print(json.dumps({"code": code, "sleeper": sleeper.pid, "reaped": quiet.returncode}))
"""
    result, _ = run_script(script, str(report))
    sleeper = json.loads((tmp_path / "child-sleep").read_text())
    assert sleeper["pid"] == result["sleeper"] and sleeper["sid"] == sleeper["pid"]  # own session
    assert (tmp_path / "child-usr1").exists()
    assert result["code"] == -signal.SIGUSR1  # no inherited handler caught it
    assert not (tmp_path / "child.handled").exists()
    assert result["reaped"] == 0


def test_the_idle_workers_of_a_run_are_stopped_once_nothing_is_left(offline_cohort):
    """Forked workers inherit the parent's settings: with an idle worker's first sleep an
    hour long, the run still ends as soon as the cohort is done, because the runner stops
    the idle worker once the other has found nothing left."""
    db = offline_cohort()
    script = RUN.replace(
        "summary = run_cohort(",
        "import daydream.worker.loop as w; w.IDLE_FIRST_S = w.IDLE_POLL_S = 3600.0\n"
        "summary = run_cohort(",
    )
    result, _ = run_script(script, str(db))
    assert result["started"] == "fork" and result["remaining"] == 0


GIVE_BACK = """
import json, os, signal, sys
from daydream.worker.config import WorkerConfig
from daydream.worker.process import run_worker
heard = []
signal.signal(signal.SIGTERM, lambda *_: heard.append("SIGTERM"))
run_worker(WorkerConfig(db_path=sys.argv[1], cohort="k", provider_override="offline"))
os.kill(os.getpid(), signal.SIGTERM)  # after the worker's loop has closed
print(json.dumps({"heard": heard, "wakeup_fd": signal.set_wakeup_fd(-1)}))
"""


def test_a_worker_gives_the_stop_signals_back_before_its_loop_closes(offline_cohort):
    """The loop's handlers go while it still runs: a stop arriving as it closes meets the
    previous handler, never the loop's closed wakeup pipe ("Exception ignored ... signal
    wakeup fd" and a traceback on stderr, which ``daydream run`` printed now and then when
    it stopped its idle workers)."""
    db = offline_cohort()
    result, _ = run_script(GIVE_BACK, str(db))
    assert result == {"heard": ["SIGTERM"], "wakeup_fd": -1}
