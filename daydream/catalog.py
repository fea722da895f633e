"""The catalog: the named things a cohort spec refers to, loaded from a directory.

A catalog holds **concepts** (a name plus texts at the levels sentence, paragraph and
article), **combos** (ordered lists of concepts and the level to show them at),
**templates** (Jinja bodies per stage with their parser, generator and settings),
**models** (a provider, the provider's model string, a concurrency pool and prices) and
optional **providers** (OpenAI-compatible endpoints beyond `providers.DEFAULT_PROVIDERS`).
`load_catalog` reads one directory in either layout and returns typed, frozen objects; it
touches nothing but the files (no database, no network, no environment): recording them
in the event log is `registry.import_catalog`'s job.

Two layouts (docs/catalog.md has the details):

- ``upstream``: the Dagster pipeline's ``1_raw`` (CSV rows plus ``.txt`` bodies), given as
  the ``1_raw`` directory or the data root holding it; ``combo_mappings.csv`` may sit in
  that directory or its parent.
- ``daydream``: ``concepts.yaml``, ``combos.yaml``, ``templates.yaml`` with bodies in
  ``templates/<stage>/<id>.j2``, ``models.yaml`` and an optional ``providers.yaml``.

Invariants:

- Every entry has a ``version`` = ``"b2:"`` + BLAKE2b-128 of the canonical JSON of all its
  fields: identical content gives the identical version on any machine, any edit (body,
  parser, price, name...) gives a new one. Generations record these versions.
- Ids are unique per kind ignoring case (generation ids lowercase them) and use only
  letters, digits, ``.``, ``_`` and ``-``.
- Every combo names known concepts, once each; every ``llm`` template has a body and a
  ``copy`` template (essay only) has none; a parser is valid for its stage (evaluations
  need a score parser) and evaluation templates carry their score scale; every model
  names a known provider or gives its own ``base_url``.
- Anything malformed raises `CatalogError` with one line naming the file, the row or key
  and the fix. What upstream tolerated but is suspicious (body files with no row, concepts
  with no text) is kept out of the catalog and reported in ``Catalog.warnings``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from daydream.errors import CatalogError
from daydream.providers import DEFAULT_PROVIDERS
from daydream.vocabulary import LEVELS, PARSERS, STAGES, Level, Parser, Stage

__all__ = [
    "Catalog",
    "Combo",
    "Concept",
    "Model",
    "Provider",
    "Template",
    "combo_id_for",
    "load_catalog",
]

DEFAULT_LEVEL = "paragraph"
UPSTREAM_SCALE = (0.0, 9.0)  # every upstream rubric asks for "SCORE: X" with X a digit 0-9
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"

Id = Annotated[str, Field(pattern=_ID_PATTERN)]
Text = Annotated[str, Field(min_length=1)]


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @property
    def version(self) -> str:
        """Content hash of every field: equal content, equal version."""
        return _digest({"kind": type(self).__name__.lower(), **self.model_dump(mode="json")})


class Concept(_Entry):
    concept_id: Id
    name: Text
    descriptions: dict[Level, Text]

    def text(self, level: str) -> str:
        """The text shown at ``level``: that level, else paragraph, else sentence, else the name."""
        for key in (level, "paragraph", "sentence"):
            if key in self.descriptions:
                return self.descriptions[key]
        return self.name


class Combo(_Entry):
    combo_id: Id
    concept_ids: tuple[Id, ...] = Field(min_length=1)
    level: Level = "paragraph"


class Template(_Entry):
    stage: Stage
    template_id: Id
    name: Text
    description: str = ""
    body: str | None
    parser: Parser = "identity"
    generator: Literal["llm", "copy"] = "llm"
    scale: tuple[float, float] | None = None
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    min_lines: int | None = Field(default=None, ge=1)
    seed: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Template:
        if (self.body is None) != (self.generator == "copy"):
            raise ValueError("an llm template needs a body and a copy template has none")
        if self.parser not in PARSERS[self.stage]:
            raise ValueError(f"parser {self.parser} is not valid for {self.stage} templates")
        if (self.scale is None) != (self.stage != "evaluation"):
            raise ValueError("evaluation templates, and only they, have a scale")
        return self


class Model(_Entry):
    model_id: Id
    provider: Id
    provider_model: Text
    display_name: Text
    pool: Text
    vendor: str | None = None
    specialization: str | None = None
    price_input: float | None = Field(default=None, ge=0)  # USD per prompt token
    price_output: float | None = Field(default=None, ge=0)  # USD per completion token
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    extra: dict[str, Any] = {}  # merged into the request body
    base_url: str | None = None  # overrides the provider's endpoint

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for one call, or None when a price is unknown."""
        if self.price_input is None or self.price_output is None:
            return None
        return prompt_tokens * self.price_input + completion_tokens * self.price_output


class Provider(_Entry):
    """An OpenAI-compatible endpoint declared in providers.yaml (new, or overriding a default)."""

    name: Id
    base_url: str
    api_key_env: str | None = None  # the *name* of the variable holding the key, never a key


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    concepts: tuple[Concept, ...]
    combos: tuple[Combo, ...]
    templates: tuple[Template, ...]
    models: tuple[Model, ...]
    providers: tuple[Provider, ...] = ()
    source: Path
    layout: Literal["upstream", "daydream"]
    warnings: tuple[str, ...] = ()
    _index: dict[tuple[str, ...], Any] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        self._index.update({("concept", c.concept_id): c for c in self.concepts})
        self._index.update({("combo", c.combo_id): c for c in self.combos})
        self._index.update({("template", t.stage, t.template_id): t for t in self.templates})
        self._index.update({("model", m.model_id): m for m in self.models})
        self._index.update({("provider", p.name): p for p in self.providers})

    @property
    def version(self) -> str:
        """Hash of every entry's version (not of the source path or the warnings)."""
        entries = (*self.concepts, *self.combos, *self.templates, *self.models, *self.providers)
        return _digest(sorted(e.version for e in entries))

    def concept(self, concept_id: str) -> Concept:
        return self._get(("concept", concept_id), "concept")

    def combo(self, combo_id: str) -> Combo:
        return self._get(("combo", combo_id), "combo")

    def template(self, stage: str, template_id: str) -> Template:
        return self._get(("template", stage, template_id), f"{stage} template")

    def model(self, model_id: str) -> Model:
        return self._get(("model", model_id), "model")

    def provider(self, name: str) -> Provider:
        return self._get(("provider", name), "provider")

    def combo_contents(self, combo_id: str) -> list[dict[str, str]]:
        """The draft templates' ``concepts`` variable: ``[{"name", "content"}]`` in combo order."""
        combo = self.combo(combo_id)
        concepts = [self.concept(cid) for cid in combo.concept_ids]
        return [{"name": c.name, "content": c.text(combo.level)} for c in concepts]

    def _get(self, key: tuple[str, ...], what: str) -> Any:
        if key not in self._index:
            known = sorted(k[-1] for k in self._index if k[:-1] == key[:-1])
            raise CatalogError(
                f'catalog {self.source}: no {what} "{key[-1]}" (known: {", ".join(known) or "none"})'
            )
        return self._index[key]


def combo_id_for(concept_ids: list[str] | tuple[str, ...], level: str, k_max: int) -> str:
    """Upstream's combo id: an order-independent hash of the concepts, the level and k_max."""
    key = "|".join(sorted(concept_ids)) + "|" + level + "|" + str(int(k_max))
    return "combo_v1_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def load_catalog(path: str | Path) -> Catalog:
    """Load and validate the catalog directory ``path`` (either layout)."""
    path = Path(path)
    if not path.is_dir():
        raise CatalogError(f"catalog {path}: not a directory (give the catalog directory)")
    for raw in (path, path / "1_raw"):
        if (raw / "concepts_metadata.csv").is_file():
            return _load_upstream(raw)
    if any((path / f"{name}.yaml").is_file() for name in ("concepts", "templates", "models")):
        return _load_daydream(path)
    raise CatalogError(
        f"catalog {path}: no concepts_metadata.csv (upstream layout, here or in 1_raw/) "
        "nor concepts.yaml (daydream layout) (give a catalog directory)"
    )


# ---------------------------------------------------------------- upstream layout


def _load_upstream(raw: Path) -> Catalog:
    warnings: list[str] = []
    file = raw / "concepts_metadata.csv"
    dirs = [raw / "concepts" / f"descriptions-{level}" for level in LEVELS]
    concepts, seen = [], []
    for where, row in _read_csv(file, ("concept_id", "name"), reject_active=True):
        cid = _check_id(file, where, "concept_id", row["concept_id"])
        seen.append((cid, where))
        where = f'{where}: concept "{cid}"'
        paths = {level: d / f"{cid}.txt" for level, d in zip(LEVELS, dirs, strict=True)}
        texts = {k: _read_text(p).strip() for k, p in paths.items() if p.is_file()}
        if not any(texts.values()):
            warnings.append(f"catalog {file}: {where} has no text; drafts will show only its name")
        data: dict[str, Any] = {
            "concept_id": cid,
            "name": row["name"],
            "descriptions": _nonblank(texts),
        }
        concepts.append(_validate(Concept, file, where, data))
    _check_unique(file, "concept", seen)
    for d in dirs:
        warnings += _orphans(d, ".txt", {cid for cid, _ in seen}, file.name)

    templates = []
    for stage in STAGES:
        file, seen = raw / f"{stage}_templates.csv", []
        for where, row in _read_csv(file, ("template_id",), reject_active=True):
            tid = _check_id(file, where, "template_id", row["template_id"])
            seen.append((tid, where))
            data = {
                "stage": stage,
                "template_id": tid,
                "name": row.get("template_name") or tid,
                "description": row.get("description", ""),
                "parser": row.get("parser") or "identity",
                "generator": (row.get("generator") or "llm").lower(),
                "scale": UPSTREAM_SCALE if stage == "evaluation" else None,
            }
            body = raw / "templates" / stage / f"{tid}.txt"
            where = f'{where}: template "{tid}"'
            templates.append(_template(file, where, body, "generator=copy", data, warnings))
        _check_unique(file, "template", seen)
        warnings += _orphans(raw / "templates" / stage, ".txt", {t for t, _ in seen}, file.name)

    file, models, seen = raw / "llm_models.csv", [], []
    for where, row in _read_csv(file, ("id", "model")):
        mid = _check_id(file, where, "id", row["id"])
        seen.append((mid, where))
        data = {
            "model_id": mid,
            "provider": "openrouter",  # upstream sent every call to OpenRouter
            "provider_model": row["model"],
            "display_name": row.get("display_name") or mid,
            "pool": "openrouter",
            "vendor": row.get("provider") or None,
            "specialization": row.get("specialization") or None,
        }
        models.append(_validate(Model, file, f'{where}: model "{mid}"', data))
    _check_unique(file, "model", seen)

    mapping = next(
        (
            d / "combo_mappings.csv"
            for d in (raw, raw.parent)
            if (d / "combo_mappings.csv").is_file()
        ),
        None,
    )
    if mapping is None:
        combos = []
        warnings.append(
            f"catalog {raw}: no combo_mappings.csv here or in {raw.parent}, so no combos "
            "(add one with columns combo_id,concept_id,description_level)"
        )
    else:
        combos = _upstream_combos(mapping, {c.concept_id for c in concepts})
    return Catalog(
        concepts=tuple(concepts),
        combos=tuple(combos),
        templates=tuple(templates),
        models=tuple(models),
        source=raw,
        layout="upstream",
        warnings=tuple(warnings),
    )


def _upstream_combos(file: Path, known: set[str]) -> list[Combo]:
    groups: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for where, row in _read_csv(file, ("combo_id", "concept_id")):
        cid = _check_id(file, where, "combo_id", row["combo_id"])
        _check_id(file, f'{where}: combo "{cid}"', "concept_id", row["concept_id"])
        groups.setdefault(cid, []).append((where, row))
    _check_unique(file, "combo", [(cid, rows[0][0]) for cid, rows in groups.items()])
    combos = []
    for cid, rows in sorted(groups.items()):
        where, first = rows[0]
        level = first.get("description_level") or DEFAULT_LEVEL
        ids = [row["concept_id"] for _, row in rows]
        where = f'{where}: combo "{cid}"'
        combos.append(_combo(file, where, cid, ids, level, known, "concepts_metadata.csv"))
    return combos


# ---------------------------------------------------------------- daydream layout


class _In(BaseModel):
    """The shape of one YAML entry: strict types, no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _ConceptIn(_In):
    id: str
    name: str
    sentence: str = ""
    paragraph: str = ""
    article: str = ""


class _ComboIn(_In):
    id: str
    concepts: list[str] = Field(min_length=1)
    level: str = DEFAULT_LEVEL


class _TemplateIn(_In):
    id: str
    name: str = ""
    description: str = ""
    parser: str = "identity"
    generator: str = "llm"
    scale: tuple[float, float] | None = Field(default=None, strict=False)
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    min_lines: int | None = Field(default=None, ge=1)
    seed: int | None = None


class _ModelIn(_In):
    id: str
    provider: str
    model: str
    name: str = ""
    pool: str = ""
    vendor: str | None = None
    specialization: str | None = None
    price_input_per_mtok: float | None = Field(default=None, ge=0)
    price_output_per_mtok: float | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    extra: dict[str, Any] = {}
    base_url: str | None = Field(default=None, pattern=r"^https?://")


class _ProviderIn(_In):
    base_url: str = Field(pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


def _load_daydream(root: Path) -> Catalog:
    warnings: list[str] = []
    file, concepts = root / "concepts.yaml", []
    for where, item in _yaml_items(file, _read_yaml(file), "concept"):
        c = _validate(_ConceptIn, file, where, item)
        texts = _nonblank({level: getattr(c, level).strip() for level in LEVELS})
        if not texts:
            raise _error(file, where, "no text (add sentence, paragraph or article)")
        data = {"concept_id": c.id, "name": c.name, "descriptions": texts}
        concepts.append(_validate(Concept, file, where, data))
    _check_unique(file, "concept", [(c.concept_id, "") for c in concepts])

    file, combos = root / "combos.yaml", []
    for where, item in _yaml_items(file, _read_yaml(file), "combo"):
        b = _validate(_ComboIn, file, where, item)
        known = {c.concept_id for c in concepts}
        combos.append(_combo(file, where, b.id, b.concepts, b.level, known, "concepts.yaml"))
    _check_unique(file, "combo", [(c.combo_id, "") for c in combos])

    file, templates = root / "templates.yaml", []
    stages = _read_yaml(file) or {}
    if not isinstance(stages, dict) or not set(stages) <= set(STAGES):
        raise _error(file, "", "must map draft, essay and evaluation to lists of templates")
    for stage in STAGES:
        entries = _yaml_items(file, stages.get(stage), "template", stage)
        for where, item in entries:
            t = _validate(_TemplateIn, file, where, item)
            data = {"stage": stage, "template_id": t.id, "name": t.name or t.id}
            data.update(t.model_dump(exclude={"id", "name"}))
            body = root / "templates" / stage / f"{t.id}.j2"
            templates.append(_template(file, where, body, "generator: copy", data, warnings))
        ids = [(t.template_id, "") for t in templates if t.stage == stage]
        _check_unique(file, f"{stage} template", ids)
        names = {t for t, _ in ids}
        warnings += _orphans(root / "templates" / stage, ".j2", names, file.name)

    providers: dict[str, Provider] = {}
    file = root / "providers.yaml"
    declared = _read_yaml(file) if file.is_file() else {}
    if not isinstance(declared, dict):
        raise _error(file, "", "must map provider names to {base_url, api_key_env}")
    for name, item in declared.items():
        where = f'provider "{name}"'
        data = {"name": _check_id(file, "", "provider", name)}
        data.update(_validate(_ProviderIn, file, where, item).model_dump())
        providers[name] = _validate(Provider, file, where, data)
    builtin = set(DEFAULT_PROVIDERS)

    file, models = root / "models.yaml", []
    for where, item in _yaml_items(file, _read_yaml(file), "model"):
        m = _validate(_ModelIn, file, where, item)
        if m.provider not in builtin | set(providers) and m.base_url is None:
            choices = ", ".join(sorted(builtin | set(providers)))
            hint = "declare it in providers.yaml or give the model a base_url"
            raise _error(file, where, f'unknown provider "{m.provider}" (known: {choices}; {hint})')
        declared_url = providers[m.provider].base_url if m.provider in providers else None
        data = {
            "model_id": m.id,
            "provider": m.provider,
            "provider_model": m.model,
            "display_name": m.name or m.id,
            "pool": m.pool or m.provider,
            "vendor": m.vendor,
            "specialization": m.specialization,
            "price_input": _per_token(m.price_input_per_mtok),
            "price_output": _per_token(m.price_output_per_mtok),
            "temperature": m.temperature,
            "max_tokens": m.max_tokens,
            "seed": m.seed,
            "extra": m.extra,
            "base_url": m.base_url or declared_url,
        }
        models.append(_validate(Model, file, where, data))
    _check_unique(file, "model", [(m.model_id, "") for m in models])
    return Catalog(
        concepts=tuple(concepts),
        combos=tuple(combos),
        templates=tuple(templates),
        models=tuple(models),
        providers=tuple(providers.values()),
        source=root,
        layout="daydream",
        warnings=tuple(warnings),
    )


def _per_token(per_million: float | None) -> float | None:
    return None if per_million is None else per_million / 1_000_000


# ---------------------------------------------------------------- shared validation


def _template(
    file: Path, where: str, body: Path, copy_fix: str, data: dict[str, Any], warnings: list[str]
) -> Template:
    stage, generator, parser, scale = (data[k] for k in ("stage", "generator", "parser", "scale"))
    if generator not in ("llm", "copy"):
        raise _error(file, where, f'generator "{generator}" is unknown (use llm or copy)')
    if generator == "copy" and stage != "essay":
        raise _error(file, where, "generator copy is only for essay templates (use llm)")
    if parser not in PARSERS[stage]:
        valid = ", ".join(PARSERS[stage])
        raise _error(
            file,
            where,
            f'parser "{parser}" is not valid for {stage} templates (use one of: {valid})',
        )
    if stage != "evaluation" and scale is not None:
        raise _error(file, where, "scale is only for evaluation templates (remove it)")
    if stage == "evaluation" and (scale is None or scale[0] >= scale[1]):
        raise _error(file, where, "scale must be [low, high] matching the rubric, e.g. [0, 10]")
    rel = body.relative_to(body.parents[2]).as_posix()
    if generator == "copy":
        if body.is_file():
            warnings.append(f"catalog {body}: ignored, template {data['template_id']} is a copy")
        return _validate(Template, file, where, {**data, "body": None})
    if not body.is_file():
        raise CatalogError(
            f"catalog {file}: {where} has no body file {rel} (add it, or set {copy_fix})"
        )
    return _validate(Template, file, where, {**data, "body": _read_text(body)})


def _combo(
    file: Path, where: str, cid: str, ids: list[str], level: str, known: set[str], source: str
) -> Combo:
    if level not in LEVELS:
        raise _error(file, where, f'level "{level}" is unknown (use one of: {", ".join(LEVELS)})')
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise _error(file, where, f"lists {', '.join(repeated)} more than once (list each once)")
    missing = [i for i in ids if i not in known]
    if missing:
        text = f"unknown concepts {', '.join(missing)} (add them to {source} or fix the ids)"
        raise _error(file, where, text)
    data = {"combo_id": cid, "concept_ids": tuple(ids), "level": level}
    return _validate(Combo, file, where, data)


def _check_id(file: Path, where: str, key: str, value: Any) -> str:
    if value == "" or value is None:
        raise _error(file, where, f"{key} is empty (fill it in)")
    if not isinstance(value, str):
        raise _error(file, where, f"{key} {value!r} is not text (quote it)")
    if not re.match(_ID_PATTERN, value):
        rule = 'may use only letters, digits, ".", "_" and "-"'
        raise _error(file, where, f'{key} "{value}" {rule} (rename it)')
    return value


def _check_unique(file: Path, what: str, ids: list[tuple[str, str]]) -> None:
    """Ids must differ ignoring case: generation ids lowercase them."""
    seen: dict[str, str] = {}
    for ident, where in ids:
        if ident.lower() in seen:
            first = seen[ident.lower()]
            text = f'{what} "{ident}" repeats "{first}" (ids must differ ignoring case; rename or remove one)'
            raise _error(file, where, text)
        seen[ident.lower()] = ident


_HINTS = {
    "base_url": "must be an http(s) URL such as http://localhost:8000/v1",
    "api_key_env": "must name an environment variable such as MY_API_KEY "
    "(the key itself belongs in the environment, never in the catalog)",
}


def _validate(cls: type[BaseModel], file: Path, where: str, data: Any) -> Any:
    """Build ``cls`` from ``data``; the first problem becomes a one-line CatalogError."""
    if not isinstance(data, dict):
        raise _error(file, where, "must be a mapping of keys to values")
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
        elif key in _HINTS:  # never echo these values: a key may have been pasted there
            text = f"{key} {_HINTS[key]}"
        else:
            text = f"{key}: {err['msg']} (fix the value)"
        raise _error(file, where, text) from None


def _error(file: Path, where: str, text: str) -> CatalogError:
    return CatalogError(f"catalog {file}: {where + ': ' if where else ''}{text}")


def _nonblank(texts: dict[str, str]) -> dict[str, str]:
    return {key: text for key, text in texts.items() if text}


def _orphans(folder: Path, suffix: str, ids: set[str], index: str) -> list[str]:
    if not folder.is_dir():
        return []
    files = sorted(f for f in folder.iterdir() if f.suffix == suffix and f.stem not in ids)
    return [f"catalog {f}: no entry in {index}; ignored" for f in files]


# ---------------------------------------------------------------- files


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CatalogError(f"catalog {file}: not valid UTF-8 (save it as UTF-8)") from None


def _read_csv(
    file: Path, required: tuple[str, ...], *, reject_active: bool = False
) -> list[tuple[str, dict[str, str]]]:
    """("row N", stripped cells) per non-blank row; N is the line the row starts on."""
    if not file.is_file():
        raise _error(file, "", f"missing (add it with the columns {','.join(required)})")
    reader = csv.reader(io.StringIO(_read_text(file).removeprefix("\ufeff")), strict=True)
    rows, start = [], 1
    try:
        header = [name.strip() for name in next(reader, [])]
        start = reader.line_num + 1
        for column in required:
            if column not in header:
                text = f'no column "{column}" (the header must include {",".join(required)})'
                raise _error(file, "", text)
        if reject_active and "active" in header:
            text = (
                'legacy column "active" is not supported (delete it and the rows you do not want)'
            )
            raise _error(file, "", text)
        for record in reader:
            where, start = f"row {start}", reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if len(record) > len(header):
                text = (
                    f"{len(record)} cells but the header has {len(header)} (quote commas in values)"
                )
                raise _error(file, where, text)
            record += [""] * (len(header) - len(record))  # short rows: blank cells, as pandas
            rows.append((where, {h: c.strip() for h, c in zip(header, record, strict=True)}))
    except csv.Error as exc:
        raise _error(file, f"row {start}", f"{exc} (fix the quoting)") from None
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


def _read_yaml(file: Path) -> Any:
    if not file.is_file():
        raise _error(file, "", "missing (add it; docs/catalog.md shows its shape)")
    try:
        return yaml.load(_read_text(file), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise _error(file, "", f"invalid YAML{at}: {problem} (fix the syntax)") from None


def _yaml_items(file: Path, data: Any, what: str, path: str = "") -> list[tuple[str, Any]]:
    """(where, entry) per list entry, ``where`` naming its position and id."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise _error(file, path, f"must be a list of {what}s")
    items = []
    for i, item in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise _error(file, where, f"must be a mapping with an id and the {what}'s keys")
        ident = _check_id(file, where, "id", item.get("id"))
        items.append((f'{where} {what} "{ident}"', item))
    return items


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "b2:" + hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
