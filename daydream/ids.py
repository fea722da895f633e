"""Generation ids: deterministic hashes of everything that determines a generation's output.

- Draft ids are the upstream pipeline's, bit for bit: ``d_`` + base36 (most significant
  first, no padding) of BLAKE2b-80 over ``combo|template|model|replicate``, each component
  stripped and lowercased. Drafts imported from the upstream store keep their ids.
- Evaluation ids use the upstream signature too (``essay|template|model|replicate``), which
  already contains every axis that changes an evaluation.
- Essay ids: the upstream signature (``draft|template|replicate``) forgot the essay model, so
  essays differing only by model collapsed into one. LLM essays use signature version 2,
  ``v2|<parent>|template|model|replicate``, where the parent is the draft id or, for essays
  written straight from a combination, ``combo:<combo_id>``. Copy-mode essays have no model:
  their output is the draft verbatim, so the upstream signature is exact for them and they
  keep upstream ids.

Each generation stores its canonical signature string; the ``v2|`` prefix makes the version
visible, so a later change of scheme is detectable.
"""

from __future__ import annotations

import hashlib

from daydream.errors import PlanError

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# Two base-36 digits per division: planning hashes a million ids, and this halves the work.
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
PREFIX = {"draft": "d_", "essay": "e_", "evaluation": "v_"}


def base36(number: int) -> str:
    chunks = []
    while number >= 1296:
        number, rest = divmod(number, 1296)
        chunks.append(_PAIRS[rest])
    if number:
        chunks.append(_PAIRS[number].lstrip("0"))
    return "".join(reversed(chunks)) or "0"


def _component(value: object, field: str) -> str:
    if value is None:
        raise PlanError(f"id signature: {field} is missing")
    text = str(value).strip()
    if not text:
        raise PlanError(f"id signature: {field} is empty")
    return text.lower()


def _replicate(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise PlanError(f"id signature: replicate {value!r} is not an integer") from None


def gen_id(stage: str, canonical: str, *, collision_index: int = 0) -> str:
    """The upstream hash: prefix + base36(BLAKE2b-80(canonical))."""
    if collision_index:
        canonical += f"|collision:{collision_index}"
    digest = hashlib.blake2b(canonical.encode("utf-8"), digest_size=10).digest()
    body = base36(int.from_bytes(digest, "big"))
    return PREFIX[stage] + body + (f"-{collision_index}" if collision_index else "")


def draft_signature(combo_id: str, template_id: str, model_id: str, replicate: object) -> str:
    parts = (
        _component(combo_id, "combo_id"),
        _component(template_id, "draft_template_id"),
        _component(model_id, "llm_model_id"),
        str(_replicate(replicate)),
    )
    return "|".join(parts)


def essay_signature(
    parent: str, template_id: str, model_id: str | None, replicate: object, *, copy: bool
) -> str:
    """``parent`` is a draft id, or ``combo:<id>`` for an essay with no draft."""
    if copy:
        return "|".join(
            (
                _component(parent, "draft_gen_id"),
                _component(template_id, "essay_template_id"),
                str(_replicate(replicate)),
            )
        )
    return "|".join(
        (
            "v2",
            _component(parent, "parent"),
            _component(template_id, "essay_template_id"),
            _component(model_id, "essay_llm"),
            str(_replicate(replicate)),
        )
    )


def evaluation_signature(essay_id: str, template_id: str, model_id: str, replicate: object) -> str:
    return evaluation_signature_with(essay_id, evaluation_suffix(template_id, model_id, replicate))


def evaluation_suffix(template_id: str, model_id: str, replicate: object) -> str:
    """The part of an evaluation signature after the essay (the same for many essays)."""
    return "|".join(
        (
            _component(template_id, "evaluation_template_id"),
            _component(model_id, "llm_model_id"),
            str(_replicate(replicate)),
        )
    )


def evaluation_signature_with(essay_id: str, suffix: str) -> str:
    return _component(essay_id, "essay_gen_id") + "|" + suffix


def draft_id(combo_id: str, template_id: str, model_id: str, replicate: object = 1) -> str:
    return gen_id("draft", draft_signature(combo_id, template_id, model_id, replicate))


def essay_id(
    parent: str, template_id: str, model_id: str | None, replicate: object = 1, *, copy: bool
) -> str:
    return gen_id("essay", essay_signature(parent, template_id, model_id, replicate, copy=copy))


def evaluation_id(essay: str, template_id: str, model_id: str, replicate: object = 1) -> str:
    return gen_id("evaluation", evaluation_signature(essay, template_id, model_id, replicate))
