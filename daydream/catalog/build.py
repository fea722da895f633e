"""Building entries from either layout's rows: ids, uniqueness and field checks, each
problem one ``CatalogError`` line naming the file, the row or key and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from daydream.catalog.entries import _ID_PATTERN, Combo, Template
from daydream.catalog.files import catalog_error, read_text
from daydream.errors import CatalogError
from daydream.vocabulary import LEVELS, PARSERS


def build_template(
    file: Path, where: str, body: Path, copy_fix: str, data: dict[str, Any], warnings: list[str]
) -> Template:
    stage, generator, parser, scale = (data[k] for k in ("stage", "generator", "parser", "scale"))
    if generator not in ("llm", "copy"):
        raise catalog_error(file, where, f'generator "{generator}" is unknown (use llm or copy)')
    if generator == "copy" and stage != "essay":
        raise catalog_error(file, where, "generator copy is only for essay templates (use llm)")
    if parser not in PARSERS[stage]:
        valid = ", ".join(PARSERS[stage])
        raise catalog_error(
            file,
            where,
            f'parser "{parser}" is not valid for {stage} templates (use one of: {valid})',
        )
    if stage != "evaluation" and scale is not None:
        raise catalog_error(file, where, "scale is only for evaluation templates (remove it)")
    if stage == "evaluation" and (scale is None or scale[0] >= scale[1]):
        raise catalog_error(
            file, where, "scale must be [low, high] matching the rubric, e.g. [0, 10]"
        )
    rel = body.relative_to(body.parents[2]).as_posix()
    if generator == "copy":
        if body.is_file():
            warnings.append(f"catalog {body}: ignored, template {data['template_id']} is a copy")
        return validate(Template, file, where, {**data, "body": None})
    if not body.is_file():
        raise CatalogError(
            f"catalog {file}: {where} has no body file {rel} (add it, or set {copy_fix})"
        )
    return validate(Template, file, where, {**data, "body": read_text(body)})


def build_combo(
    file: Path, where: str, cid: str, ids: list[str], level: str, known: set[str], source: str
) -> Combo:
    if level not in LEVELS:
        raise catalog_error(
            file, where, f'level "{level}" is unknown (use one of: {", ".join(LEVELS)})'
        )
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise catalog_error(
            file, where, f"lists {', '.join(repeated)} more than once (list each once)"
        )
    missing = [i for i in ids if i not in known]
    if missing:
        text = f"unknown concepts {', '.join(missing)} (add them to {source} or fix the ids)"
        raise catalog_error(file, where, text)
    data = {"combo_id": cid, "concept_ids": tuple(ids), "level": level}
    return validate(Combo, file, where, data)


def check_id(file: Path, where: str, key: str, value: Any) -> str:
    if value == "" or value is None:
        raise catalog_error(file, where, f"{key} is empty (fill it in)")
    if not isinstance(value, str):
        raise catalog_error(file, where, f"{key} {value!r} is not text (quote it)")
    if not re.match(_ID_PATTERN, value):
        rule = 'may use only letters, digits, ".", "_" and "-"'
        raise catalog_error(file, where, f'{key} "{value}" {rule} (rename it)')
    return value


def check_unique(file: Path, what: str, ids: list[tuple[str, str]]) -> None:
    """Ids must differ ignoring case: generation ids lowercase them."""
    seen: dict[str, str] = {}
    for ident, where in ids:
        if ident.lower() in seen:
            first = seen[ident.lower()]
            text = f'{what} "{ident}" repeats "{first}" (ids must differ ignoring case; rename or remove one)'
            raise catalog_error(file, where, text)
        seen[ident.lower()] = ident


_HINTS = {
    "base_url": "must be an http(s) URL such as http://localhost:8000/v1",
    "api_key_env": "must name an environment variable such as MY_API_KEY "
    "(the key itself belongs in the environment, never in the catalog)",
}


def validate(cls: type[BaseModel], file: Path, where: str, data: Any) -> Any:
    """Build ``cls`` from ``data``; the first problem becomes a one-line CatalogError."""
    if not isinstance(data, dict):
        raise catalog_error(file, where, "must be a mapping of keys to values")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            text = f'unknown key "{key}" (known: {", ".join(cls.model_fields)})'
        elif err["type"] == "missing":
            text = f"{key} is missing (add it)"
        elif err.get("input") == "":
            text = f"{key} is empty (fill it in)"
        elif err["loc"] and err["loc"][0] in _HINTS:  # never echo these values: a key may
            # have been pasted there (base_url may be a list: loc is then base_url.<type>...)
            text = f"{err['loc'][0]} {_HINTS[str(err['loc'][0])]}"
        elif err["type"] == "value_error":  # a validator's own words
            text = f"{key or 'entry'}: {err['ctx']['error']}"
        else:
            text = f"{key}: {err['msg']} (fix the value)"
        raise catalog_error(file, where, text) from None




def nonblank(texts: dict[str, str]) -> dict[str, str]:
    return {key: text for key, text in texts.items() if text}


def orphans(folder: Path, suffix: str, ids: set[str], index: str) -> list[str]:
    if not folder.is_dir():
        return []
    files = sorted(f for f in folder.iterdir() if f.suffix == suffix and f.stem not in ids)
    return [f"catalog {f}: no entry in {index}; ignored" for f in files]


def yaml_items(file: Path, data: Any, what: str, path: str = "") -> list[tuple[str, Any]]:
    """(where, entry) per list entry, ``where`` naming its position and id."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise catalog_error(file, path, f"must be a list of {what}s")
    items = []
    for i, item in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise catalog_error(file, where, f"must be a mapping with an id and the {what}'s keys")
        ident = check_id(file, where, "id", item.get("id"))
        items.append((f'{where} {what} "{ident}"', item))
    return items
