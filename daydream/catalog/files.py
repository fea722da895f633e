"""Reading a catalog's files: UTF-8 text, CSV rows with their line numbers, strict YAML
(duplicate keys are errors).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml

from daydream.errors import CatalogError


def read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CatalogError(f"catalog {file}: not valid UTF-8 (save it as UTF-8)") from None


def read_csv(
    file: Path, required: tuple[str, ...], *, reject_active: bool = False
) -> list[tuple[str, dict[str, str]]]:
    """("row N", stripped cells) per non-blank row; N is the line the row starts on."""
    if not file.is_file():
        raise catalog_error(file, "", f"missing (add it with the columns {','.join(required)})")
    reader = csv.reader(io.StringIO(read_text(file).removeprefix("\ufeff")), strict=True)
    rows, start = [], 1
    try:
        header = [name.strip() for name in next(reader, [])]
        start = reader.line_num + 1
        for column in required:
            if column not in header:
                text = f'no column "{column}" (the header must include {",".join(required)})'
                raise catalog_error(file, "", text)
        if reject_active and "active" in header:
            text = (
                'legacy column "active" is not supported (delete it and the rows you do not want)'
            )
            raise catalog_error(file, "", text)
        for record in reader:
            where, start = f"row {start}", reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if len(record) > len(header):
                text = (
                    f"{len(record)} cells but the header has {len(header)} (quote commas in values)"
                )
                raise catalog_error(file, where, text)
            record += [""] * (len(header) - len(record))  # short rows: blank cells, as pandas
            rows.append((where, {h: c.strip() for h, c in zip(header, record, strict=True)}))
    except csv.Error as exc:
        raise catalog_error(file, f"row {start}", f"{exc} (fix the quoting)") from None
    return rows


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in keys:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(None, None, f'duplicate key "{key}"', mark)
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(file: Path) -> Any:
    if not file.is_file():
        raise catalog_error(file, "", "missing (add it; docs/catalog.md shows its shape)")
    try:
        return yaml.load(read_text(file), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise catalog_error(file, "", f"invalid YAML{at}: {problem} (fix the syntax)") from None
    except RecursionError:
        raise catalog_error(file, "", "nested too deeply to read (fix the structure)") from None
    except ValueError as exc:  # an integer of thousands of digits
        detail = " ".join(str(exc).split())[:80]
        raise catalog_error(file, "", f"holds a value it cannot read ({detail}...)") from None




def catalog_error(file: Path, where: str, text: str) -> CatalogError:
    return CatalogError(f"catalog {file}: {where + ': ' if where else ''}{text}")
