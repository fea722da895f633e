"""Docs that can be checked: generated references match the code; the README stays true."""

from __future__ import annotations

import re
from pathlib import Path

from daydream.cli.reference import cli_reference, events_reference

REPO = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    assert (REPO / "docs" / "cli.md").read_text(encoding="utf-8") == cli_reference(), (
        "docs/cli.md is stale: run python -m daydream.cli.reference"
    )


def test_cli_reference_shows_each_command_with_its_own_usage_line():
    """Each section's usage line is what ``--help`` prints: the command's whole path."""
    sections = re.findall(r"^## `(daydream[^`]*)`\n\n```\nUsage: (.*?) \[OPTIONS\]", cli_reference(), re.M)
    assert len(sections) > 20
    for heading, usage in sections:
        assert usage == heading, (heading, usage)


def test_events_reference_is_current():
    assert (REPO / "docs" / "events.md").read_text(encoding="utf-8") == events_reference(), (
        "docs/events.md is stale: run python -m daydream.cli.reference"
    )


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block, "README must open with a bash block holding the two commands"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "daydream demo" in commands[0]
    assert "pytest" in commands[1]
    assert commands[1] in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_every_command_has_an_example():
    import click

    from daydream.cli import cli

    def walk(command, path):
        yield path, command
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])

    for path, command in walk(cli, ["daydream"]):
        if isinstance(command, click.Group) and path != ["daydream"]:
            continue
        assert "Example:" in (command.help or ""), f"{' '.join(path)} has no Example: block"


def _recipes() -> str:
    text = (REPO / "docs" / "providers.md").read_text(encoding="utf-8")
    return text.split("## Local servers", 1)[1].split("\n## ", 1)[0]


def test_the_local_server_recipes_catalog_entries_load(tmp_path):
    """Each recipe's models.yaml entry is a valid catalog model on the provider it names."""
    import yaml

    from daydream.catalog.load import load_catalog
    from tests.scenario import write_catalog

    blocks = re.findall(r"```yaml\n(.*?)```", _recipes(), flags=re.S)
    models = [entry for block in blocks for entry in yaml.safe_load(block)]
    assert [(m["id"], m["provider"]) for m in models] == [
        ("gemma-270m", "llamacpp"),
        ("llama-3b", "ollama"),
        ("qwen-7b", "vllm"),
    ]
    catalog = load_catalog(write_catalog(tmp_path / "catalog", models=models))
    assert [m.provider_model for m in catalog.models] == [
        "gemma-3-270m",
        "llama3.2:3b",
        "Qwen/Qwen2.5-7B-Instruct",
    ]


def test_the_llama_cpp_python_recipe_is_the_command_the_real_server_test_runs(tmp_path):
    """The documented server command has the flags tests/localserver.py starts it with."""
    from tests.localserver import LlamaServer

    recipe = _recipes().split("python -m llama_cpp.server", 1)[1].split("\n```", 1)[0]
    documented = set(re.findall(r"--\w+", recipe))
    server = LlamaServer(tmp_path / "model.gguf", tmp_path / "log")
    assert documented == {flag for flag in server.command() if flag.startswith("--")}


def test_every_test_the_architecture_page_cites_exists():
    """docs/architecture.md names the tests that prove each guarantee (``module::test``, a
    bare ``::test`` in the same module as the one before it, ``test_t1_*`` for a prefix);
    a renamed or deleted test must not leave a guarantee citing nothing."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    cited: list[tuple[str, str, bool]] = []
    module = None
    for cell in re.findall(r"`([^`]*::[^`]*)`", text):
        named = re.match(r"(test_\w+\.py)::", cell)
        module = named.group(1) if named else module
        for name, star in re.findall(r"::(test_\w+)(\*?)", cell):
            assert module is not None, cell
            cited.append((module, name, bool(star)))
    assert len(cited) > 30
    missing = [
        f"{module}::{name}"
        for module, name, prefix in cited
        if not re.search(
            "^def " + name + ("" if prefix else r"\("),
            (REPO / "tests" / module).read_text(encoding="utf-8"),
            re.M,
        )
    ]
    assert missing == []
