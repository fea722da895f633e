"""daydream's own layout: ``concepts.yaml``, ``combos.yaml``, ``templates.yaml`` with bodies
in ``templates/<stage>/<id>.j2``, ``models.yaml`` and an optional ``providers.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from daydream.catalog.build import (
    build_combo,
    build_template,
    catalog_error,
    check_id,
    check_unique,
    nonblank,
    orphans,
    validate,
    yaml_items,
)
from daydream.catalog.entries import (
    DEFAULT_LEVEL,
    Catalog,
    Combo,
    Concept,
    Extra,
    MaxTokens,
    MinLines,
    Model,
    PricePerMtok,
    Provider,
    Seed,
    Temperature,
    Template,
)
from daydream.catalog.files import read_yaml
from daydream.providers.config import DEFAULT_PROVIDERS
from daydream.vocabulary import LEVELS, STAGES

Url = Annotated[str, Field(pattern=r"^https?://")]


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
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    min_lines: MinLines | None = None
    seed: Seed | None = None
    extra: Extra = {}


class _ModelIn(_In):
    id: str
    provider: str
    model: str
    name: str = ""
    pool: str = ""
    vendor: str | None = None
    specialization: str | None = None
    price_input_per_mtok: PricePerMtok | None = None
    price_output_per_mtok: PricePerMtok | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    seed: Seed | None = None
    extra: Extra = {}
    base_url: Url | list[Url] | None = None  # a list: replicas of one deployment


class _ProviderIn(_In):
    base_url: Url | list[Url]
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_daydream(root: Path) -> Catalog:
    warnings: list[str] = []
    concepts = _concepts(root / "concepts.yaml")
    combos = _combos(root / "combos.yaml", {c.concept_id for c in concepts})
    templates = _templates(root, warnings)
    providers = _providers(root / "providers.yaml")
    models = _models(root / "models.yaml", providers)
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


def _concepts(file: Path) -> list[Concept]:
    concepts = []
    for where, item in yaml_items(file, read_yaml(file), "concept"):
        c = validate(_ConceptIn, file, where, item)
        texts = nonblank({level: getattr(c, level).strip() for level in LEVELS})
        if not texts:
            raise catalog_error(file, where, "no text (add sentence, paragraph or article)")
        data = {"concept_id": c.id, "name": c.name, "descriptions": texts}
        concepts.append(validate(Concept, file, where, data))
    check_unique(file, "concept", [(c.concept_id, "") for c in concepts])
    return concepts


def _combos(file: Path, known: set[str]) -> list[Combo]:
    combos = []
    for where, item in yaml_items(file, read_yaml(file), "combo"):
        b = validate(_ComboIn, file, where, item)
        combos.append(build_combo(file, where, b.id, b.concepts, b.level, known, "concepts.yaml"))
    check_unique(file, "combo", [(c.combo_id, "") for c in combos])
    return combos


def _templates(root: Path, warnings: list[str]) -> list[Template]:
    """templates.yaml, stage by stage, with their bodies (body files no entry names are
    added to ``warnings``)."""
    file, templates = root / "templates.yaml", []
    stages = read_yaml(file) or {}
    if not isinstance(stages, dict) or not set(stages) <= set(STAGES):
        raise catalog_error(file, "", "must map draft, essay and evaluation to lists of templates")
    for stage in STAGES:
        entries = yaml_items(file, stages.get(stage), "template", stage)
        for where, item in entries:
            t = validate(_TemplateIn, file, where, item)
            data = {"stage": stage, "template_id": t.id, "name": t.name or t.id}
            data.update(t.model_dump(exclude={"id", "name"}))
            body = root / "templates" / stage / f"{t.id}.j2"
            templates.append(build_template(file, where, body, "generator: copy", data, warnings))
        ids = [(t.template_id, "") for t in templates if t.stage == stage]
        check_unique(file, f"{stage} template", ids)
        names = {t for t, _ in ids}
        warnings += orphans(root / "templates" / stage, ".j2", names, file.name)
    return templates


def _providers(file: Path) -> dict[str, Provider]:
    """The optional providers.yaml, by name."""
    providers: dict[str, Provider] = {}
    declared = read_yaml(file) if file.is_file() else {}
    if not isinstance(declared, dict):
        raise catalog_error(file, "", "must map provider names to {base_url, api_key_env}")
    for name, item in declared.items():
        where = f'provider "{name}"'
        data = {"name": check_id(file, "", "provider", name)}
        data.update(validate(_ProviderIn, file, where, item).model_dump())
        providers[name] = validate(Provider, file, where, data)
    return providers


def _models(file: Path, providers: dict[str, Provider]) -> list[Model]:
    """models.yaml; each model names a built-in or declared provider, or its own base_url."""
    builtin = set(DEFAULT_PROVIDERS)
    models = []
    for where, item in yaml_items(file, read_yaml(file), "model"):
        m = validate(_ModelIn, file, where, item)
        if m.provider not in builtin | set(providers) and m.base_url is None:
            choices = ", ".join(sorted(builtin | set(providers)))
            hint = "declare it in providers.yaml or give the model a base_url"
            raise catalog_error(
                file, where, f'unknown provider "{m.provider}" (known: {choices}; {hint})'
            )
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
        models.append(validate(Model, file, where, data))
    check_unique(file, "model", [(m.model_id, "") for m in models])
    return models


def _per_token(per_million: float | None) -> float | None:
    return None if per_million is None else per_million / 1_000_000
