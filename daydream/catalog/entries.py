"""Catalog entries: concepts, combinations, templates, models and providers, as typed,
frozen objects, and the ``Catalog`` that holds one directory's worth.

Every entry has a ``version`` = ``"b2:"`` + BLAKE2b-128 of the canonical JSON of all its
fields: identical content gives the identical version on any machine, any edit (body,
parser, price, name...) gives a new one. Generations record these versions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from daydream.errors import CatalogError
from daydream.values import SQLITE_INT_MAX, SQLITE_INT_MIN, storage_problem
from daydream.vocabulary import PARSERS, Level, Parser, Stage

DEFAULT_LEVEL = "paragraph"


UPSTREAM_SCALE = (0.0, 9.0)  # every upstream rubric asks for "SCORE: X" with X a digit 0-9


# What upstream sent on every call (reference §5.1, §6): its client's temperature (callers
# never passed one) and each stage's generation_max_tokens (20480 for all three stages).
UPSTREAM_TEMPERATURE = 0.7
UPSTREAM_MAX_TOKENS = 20480


_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


Id = Annotated[str, Field(pattern=_ID_PATTERN)]


Text = Annotated[str, Field(min_length=1)]


# Every number a catalog entry holds has a range: a value beyond it is a typo or worse, and
# an integer beyond SQLite's (a seed of 10**30) would fail every call long after import.
Temperature = Annotated[float, Field(ge=0, le=100)]
MaxTokens = Annotated[int, Field(ge=1, le=10_000_000)]
MinLines = Annotated[int, Field(ge=1, le=100_000)]
Seed = Annotated[int, Field(ge=SQLITE_INT_MIN, le=SQLITE_INT_MAX)]
PricePerToken = Annotated[float, Field(ge=0, le=1.0)]  # USD
PricePerMtok = Annotated[float, Field(ge=0, le=1_000_000)]  # USD per million tokens
SCALE_LIMIT = 1e9

RESERVED_EXTRA = ("model", "messages", "stream")
"""Request keys a catalog ``extra`` may not set: the request's own fields set them (and a
streamed reply is not what the worker reads)."""


def check_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` request parameters, refused when they set a reserved key or hold a value
    that is not plain JSON or not storable (nan, inf, an integer beyond 64 bits)."""
    reserved = [key for key in RESERVED_EXTRA if key in extra]
    if reserved:
        raise ValueError(
            f"may not set {', '.join(reserved)}: daydream sets the model and the messages"
            " itself and reads whole replies, not streams; remove it"
        )
    problem = storage_problem(extra)
    if problem is not None:
        raise ValueError(f"must hold plain JSON values; it holds {problem}")
    return extra


Extra = Annotated[dict[str, Any], AfterValidator(check_extra)]


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
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    min_lines: MinLines | None = None
    seed: Seed | None = None
    extra: Extra = {}  # merged into the request body, over the model's extra

    @property
    def version(self) -> str:
        """Content hash of every field; an empty ``extra`` (added later) is left out, so
        templates without one keep the version they had."""
        fields = self.model_dump(mode="json")
        if not fields["extra"]:
            del fields["extra"]
        return _digest({"kind": "template", **fields})

    @model_validator(mode="after")
    def _consistent(self) -> Template:
        if (self.body is None) != (self.generator == "copy"):
            raise ValueError("an llm template needs a body and a copy template has none")
        if self.parser not in PARSERS[self.stage]:
            raise ValueError(f"parser {self.parser} is not valid for {self.stage} templates")
        if (self.scale is None) != (self.stage != "evaluation"):
            raise ValueError("evaluation templates, and only they, have a scale")
        if self.scale and not -SCALE_LIMIT <= self.scale[0] < self.scale[1] <= SCALE_LIMIT:
            raise ValueError(f"scale must be [low, high] within +-{SCALE_LIMIT:g}, low < high")
        return self


class Model(_Entry):
    model_id: Id
    provider: Id
    provider_model: Text
    display_name: Text
    pool: Text
    vendor: str | None = None
    specialization: str | None = None
    price_input: PricePerToken | None = None  # USD per prompt token
    price_output: PricePerToken | None = None  # USD per completion token
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    seed: Seed | None = None
    extra: Extra = {}  # merged into the request body
    base_url: str | tuple[str, ...] | None = None  # the provider's endpoint (several: replicas)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for one call, or None when a price is unknown."""
        if self.price_input is None or self.price_output is None:
            return None
        return prompt_tokens * self.price_input + completion_tokens * self.price_output


class Provider(_Entry):
    """An OpenAI-compatible endpoint declared in providers.yaml (new, or overriding a default)."""

    name: Id
    base_url: str | tuple[str, ...]  # several: replicas of one deployment
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


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "b2:" + hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
