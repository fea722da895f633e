"""docs/tutorial.md, run as written: its files are written (fenced blocks whose info string
says ``file=PATH``) and its ``daydream`` commands run in order in an empty folder, each as
a new user would type it; every one must succeed, and what the page says came out must be
there."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.scenario import env

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
NOT_RUN = ("daydream browse",)  # serves until Ctrl-C
FENCE = re.compile(r"^```(\S*)(?: file=(\S+))?\n(.*?)^```$", re.M | re.S)


def steps(text: str) -> list[tuple[str, str]]:
    """("file", path + body) and ("run", command) in the order of the page."""
    found = []
    for match in FENCE.finditer(text):
        language, path, body = match.groups()
        if path:
            found.append(("file", f"{path}\n{body}"))
        elif language == "bash":
            for line in body.splitlines():
                line = line.split("#")[0].strip()
                if line.startswith("daydream ") and not line.startswith(NOT_RUN):
                    found.append(("run", line))
                elif line.startswith("mkdir "):
                    found.append(("mkdir", line))
    return found


def test_the_tutorial_runs_as_written(tmp_path):
    text = TUTORIAL.read_text(encoding="utf-8")
    found = steps(text)
    assert [kind for kind, _ in found].count("file") == 8
    folder = tmp_path
    outputs: dict[str, subprocess.CompletedProcess] = {}
    for kind, value in found:
        if kind == "mkdir":  # mkdir first-experiment && cd first-experiment
            folder = tmp_path / shlex.split(value)[1]
            folder.mkdir()
            continue
        if kind == "file":
            path, _, body = value.partition("\n")
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(body, encoding="utf-8")
            continue
        done = subprocess.run(
            [sys.executable, "-m", "daydream", *shlex.split(value)[1:]],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            env=env(),
        )
        outputs[value] = done
        expected = 1 if value == "daydream status" else 0  # the empty folder: a hint
        assert done.returncode == expected, f"{value}\n{done.stdout}\n{done.stderr}"
    # What the page says each step gives.
    assert "start with: daydream catalog import" in outputs["daydream status"].stderr
    plan = outputs["daydream plan spec.yaml"].stdout
    assert re.search(r"draft\s+2\s+2", plan) and re.search(r"essay\s+4\s+4", plan)
    assert re.search(r"evaluation\s+8\s+8", plan)
    assert "no template errors, every reply parsed" in outputs["daydream run first --rehearse"].stdout
    assert (folder / "reports" / "first" / "top-novelty.csv").is_file()
    [show] = [v for k, v in outputs.items() if k.startswith("daydream show ")]
    assert show.stdout.startswith("essay e_") and "== judges (2) ==" in show.stdout
    assert "**ledger**" in outputs["daydream search ledger --cohort first"].stdout
    assert (folder / "reports" / "first" / "report.html").is_file()
    # The ids the page names are the ones the run made (ids are deterministic).
    for gen_id in set(re.findall(r"\be_[0-9a-z]{10,}\b", text)):
        assert gen_id in outputs["daydream top first"].stdout, gen_id
