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
