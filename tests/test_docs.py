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
