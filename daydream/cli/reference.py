"""Reference docs generated from the code: the CLI (docs/cli.md) and the events (docs/events.md).

``python -m daydream.cli.reference`` rewrites both files; ``tests/test_docs.py`` fails when the
committed files differ from what the code generates, so the docs cannot drift.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import click


def cli_reference() -> str:
    from daydream.cli import cli

    lines = [
        "# CLI reference",
        "",
        "Generated from the code by `python -m daydream.cli.reference`; do not edit by hand.",
        "Every command takes `-h/--help`. `--db` defaults to `daydream.db` or `$DAYDREAM_DB`.",
        "",
    ]
    for path, command in _walk(cli, ["daydream"]):
        # Each command's help in the chain of contexts of its path, as `--help` shows it
        # (Usage: daydream db check ...).
        ctx = None
        group: click.Command = cli
        for depth, name in enumerate(path):
            if depth:
                assert isinstance(group, click.Group)
                group = group.commands[name]
            ctx = click.Context(
                group,
                info_name=name,
                parent=ctx,
                terminal_width=100,
                max_content_width=100,
                **(cli.context_settings if ctx is None else {}),
            )
        assert ctx is not None
        lines += [f"## `{' '.join(path)}`", "", "```", command.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(lines)


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _walk(command.commands[name], [*path, name])
    return found


def events_reference() -> str:
    from daydream.events import EVENT_TYPES

    lines = [
        "# Event reference",
        "",
        "Generated from `daydream/events.py` by `python -m daydream.cli.reference`; do not edit.",
        "Every row of the `events` table has `id` (global order), `type`, `subject`, `data`",
        "(the JSON fields below), `recorded_at` (UTC) and `actor`.",
        "",
    ]
    for type_name in sorted(EVENT_TYPES):
        model = EVENT_TYPES[type_name]
        lines += [f"## `{type_name}`", "", inspect.cleandoc(model.__doc__ or ""), ""]
        lines += ["| field | type | required |", "|---|---|---|"]
        for name, field in model.model_fields.items():
            lines.append(
                f"| `{name}` | `{_type_name(field.annotation)}` | {'yes' if field.is_required() else 'no'} |"
            )
        lines.append("")
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    text = (
        getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    )
    return text or str(annotation).replace("typing.", "")


def write(docs: Path) -> list[Path]:
    written = []
    for name, text in (("cli.md", cli_reference()), ("events.md", events_reference())):
        path = docs / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "docs"
    )
    for path in write(target):
        print(path)
