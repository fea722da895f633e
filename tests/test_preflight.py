"""Preflight: before any worker starts, ``daydream run`` (and ``--rehearse``) checks every
endpoint, model, key variable and context the cohort's unfinished calls need: one line per
problem, exit 1, nothing written, no model call.

Each test plans a small cohort in a real SQLite file and runs the real command line
against ``FakeAPI`` servers on 127.0.0.1 (or a port nobody listens on).
"""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from tests.fakeapi import FakeAPI
from tests.invariants import log_snapshot
from tests.scenario import (
    cohort,
    combo_ids,
    daydream_cmd,
    env,
    model,
    plan,
    run,
    write_catalog,
    write_spec,
)

SPEC = {
    "combo_id": combo_ids(2),
    "draft_template": ["notes"],
    "draft_llm": ["m1"],
    "essay_template": ["copy"],
    "evaluation_template": ["judge"],
    "evaluation_llm": ["m1"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def run_k(db: Path, *args: str, environ: dict[str, str] | None = None):
    return run(daydream_cmd("run", "k", "--db", str(db), *args), check=False, environ=environ)


def test_a_wrong_model_name_and_an_unreachable_port_are_caught_with_nothing_written(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with FakeAPI(models=["served-model"]) as api:
        db = cohort(
            tmp_path,
            [model("m1"), model("m2", "wrong-name", provider="local", base_url=api.base_url)],
            axes={"evaluation_llm": ["m2"]},
        )
        before = log_snapshot(db)
        done = run_k(db, "--base-url", f"vllm={dead}")
        calls = api.calls
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    unreachable, unserved = error_lines(done.stderr)
    assert unreachable.startswith(f"Error: provider vllm: {dead} does not answer (ConnectError:")
    assert unreachable.endswith(
        "); start the server, or point the provider at it (--base-url vllm=URL,"
        " $DAYDREAM_VLLM_BASE_URL or base_url in the catalog)"
    )
    assert unserved == (
        f"Error: model m2: {api.base_url} does not serve 'wrong-name' (it serves:"
        " served-model); fix the model string in models.yaml, or point the provider at the"
        " server that has it"
    )
    assert calls == 0
    assert log_snapshot(db) == before  # nothing written


def test_a_key_variable_the_catalog_names_must_be_set_and_a_rehearsal_says_so(tmp_path):
    with FakeAPI(models=["m1"], api_key="sk-secured-key-123") as api:
        catalog = write_catalog(tmp_path / "catalog", models=[model("m1", provider="secured")])
        providers = {"secured": {"base_url": api.base_url, "api_key_env": "SECURED_KEY"}}
        (catalog / "providers.yaml").write_text(yaml.safe_dump(providers), encoding="utf-8")
        db = tmp_path / "run.db"
        plan(db, catalog, write_spec(tmp_path / "spec.yaml", SPEC))
        before = log_snapshot(db)
        missing = run_k(db)
        rehearsal = run_k(db, "--rehearse")
        wrong = run_k(db, environ=env(SECURED_KEY="sk-wrong-key-456"))
        right = run_k(db, environ=env(SECURED_KEY="sk-secured-key-123"))
    line = (
        "model m1: the catalog names $SECURED_KEY as the key of provider secured, and it is"
        " not set (export it or put it in .env)"
    )
    assert missing.returncode == 1 and error_lines(missing.stderr) == [f"Error: {line}"]
    assert rehearsal.returncode == 1
    assert f"  a real run would stop before its first call:\n    {line}" in rehearsal.stdout
    assert wrong.returncode == 1
    assert error_lines(wrong.stderr) == [
        f"Error: provider secured: {api.base_url} rejected the key (HTTP 401: fakeapi: invalid"
        " API key); check $SECURED_KEY (or the server's --api-key)"
    ]
    assert "sk-wrong" not in wrong.stderr + wrong.stdout
    assert log_snapshot(db)[: len(before)] == before
    assert len(log_snapshot(db)) > len(before)  # only the right key's run wrote anything
    assert right.returncode == 0, right.stderr


def test_max_tokens_past_the_servers_context_is_caught(tmp_path):
    """vLLM lists each model's max_model_len; llama.cpp says n_ctx in /props (and answers
    with the model it loaded whatever the name, so the name is not checked there)."""
    with FakeAPI(models=["m1"], max_model_len=350) as vllm, FakeAPI(n_ctx=350) as llama:
        db = cohort(
            tmp_path,
            [model("m1"), model("m2", "any-name", provider="llamacpp")],
            axes={"draft_llm": ["m1", "m2"]},
        )
        done = run_k(db, "--base-url", f"vllm={vllm.base_url}", "--base-url", f"llamacpp={llama.base_url}")
        calls = vllm.calls + llama.calls
    assert done.returncode == 1, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 2, done.stderr
    for line, (model_id, endpoint) in zip(
        lines, (("m1", vllm.base_url), ("m2", llama.base_url)), strict=True
    ):
        assert line.startswith(
            f"Error: model {model_id}, template draft/notes: max_tokens 400 after a prompt of"
            " about "
        )
        assert line.endswith(
            f" tokens does not fit the context of 350 tokens that {endpoint} reports; lower"
            " max_tokens in the catalog, or start the server with a longer context"
        )
    assert calls == 0  # the judges' 300 tokens fit; their prompts are not known yet
