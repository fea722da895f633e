"""The upstream (Dagster) gens store, read: generation directories and cohort memberships.

``scan_store(root)`` reads ``gens/<stage>/<gen_id>/metadata.json`` and
``cohorts/<id>/membership.csv`` under an upstream data root and returns typed records, plus
what could not be read and why (``Skip``). It touches only files: recording them is
``legacy.import_legacy``'s job (as ``catalog`` reads and ``registry`` records).

Invariants:

- Deterministic: stages in the order draft, essay, evaluation, directories sorted by name.
- Metadata is read as upstream's ``signature_from_metadata`` read it: ``template_id`` (or
  the legacy ``<stage>_template``), ``replicate`` None -> 1, a digit string or a number ->
  int; the signature is upstream's canonical string, built with ``ids``. Copy-mode essays'
  ``llm_model_id`` (upstream wrote the string "None") becomes None.
- Texts are decoded as UTF-8 bytes as written, without newline translation.
- Nothing outside the data root is read: a generation or cohort whose directory or files
  are links leading out of it is skipped, with the reason.
- Nothing is ever written.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daydream import ids
from daydream.spec.model import REPLICATE_MAX
from daydream.values import quote
from daydream.vocabulary import STAGES

__all__ = [
    "COHORT_ID",
    "Skip",
    "StoreScan",
    "StoredCohort",
    "StoredGen",
    "Unreadable",
    "read_json",
    "read_text",
    "scan_store",
]

COHORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class Skip:
    """Something not imported: its path under the data root and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class StoredGen:
    """One generation directory's metadata, checked."""

    stage: str
    gen_id: str
    path: str  # relative to the data root
    directory: Path
    mode: str
    template_id: str
    model_id: str | None
    parent: str | None
    combo_id: str | None
    replicate: int
    signature: str


@dataclass
class StoredCohort:
    cohort_id: str
    source: Path  # its spec/config.yaml, else its membership.csv
    spec_text: str
    members: list[str]


@dataclass
class StoreScan:
    gens: list[StoredGen] = field(default_factory=list)
    cohorts: list[StoredCohort] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Unreadable(Exception):
    """A file or a generation cannot be read; the message is the reason."""


def scan_store(root: Path) -> StoreScan:
    """Every generation (parents' stages first, ids sorted) and cohort under ``root``."""
    scan = StoreScan()
    _scan_gens(root, scan)
    _scan_cohorts(root, scan)
    return scan


def _scan_gens(root: Path, report: StoreScan) -> None:
    gens_root = root / "gens"
    if not gens_root.is_dir():
        report.warnings.append(f"{root}: no gens/ directory, so there are no generations to import")
        return
    for child in sorted(gens_root.iterdir()):
        if child.is_dir() and child.name not in STAGES:
            report.skipped.append(
                Skip(
                    f"gens/{child.name}",
                    "unknown stage directory (expected draft, essay or evaluation)",
                )
            )
    for stage in STAGES:
        folder = gens_root / stage
        if not folder.is_dir():
            continue
        for directory in sorted(p for p in folder.iterdir() if p.is_dir()):
            path = f"gens/{stage}/{directory.name}"
            try:
                refuse_outside(root, directory, GEN_FILES)
                gen = _read_gen(stage, directory, path)
            except Unreadable as exc:
                report.skipped.append(Skip(path, str(exc)))
                continue
            _check_id(gen, report)
            report.gens.append(gen)


GEN_FILES = ("metadata.json", "prompt.txt", "raw.txt", "raw_metadata.json", "parsed.txt")
"""The files of a generation directory that are read."""


def refuse_outside(root: Path, directory: Path, names: tuple[str, ...]) -> None:
    """Raise ``Unreadable`` when ``directory`` or one of its files ``names`` is a link that
    leads out of ``root`` (a ``raw.txt`` linked to a system file must not be imported)."""
    top = _real(root) or root
    for path in (directory, *(directory / name for name in names)):
        real = _real(path)
        if real is None or not real.is_relative_to(top):
            shown = path.name if path != directory else "the directory"
            raise Unreadable(f"{shown} is a link that leads out of the data root; not read")


def _real(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return None


def _read_gen(stage: str, directory: Path, path: str) -> StoredGen:
    file = directory / "metadata.json"
    if not file.is_file():
        raise Unreadable("no metadata.json")
    meta = read_json(file)
    if not isinstance(meta, dict):
        raise Unreadable("metadata.json is not a JSON object")
    gen_id = directory.name
    if _text(meta.get("stage")) not in (None, stage):
        raise Unreadable(
            f"metadata.json says stage {quote(meta['stage'])}, but it is under gens/{stage}"
        )
    if _text(meta.get("gen_id")) not in (None, gen_id):
        raise Unreadable(f"metadata.json says gen_id {quote(meta['gen_id'])}")
    mode = (_text(meta.get("mode")) or "llm").lower()
    if mode not in ("llm", "copy"):
        raise Unreadable(f"metadata.json: unknown mode {quote(mode)} (expected llm or copy)")
    if mode == "copy" and stage != "essay":
        raise Unreadable(f"copy-mode {stage}s are not supported (only essays copy their draft)")
    template = _text(meta.get("template_id")) or _text(meta.get(f"{stage}_template"))
    if template is None:
        raise Unreadable("metadata.json has no template_id")
    parent = _text(meta.get("parent_gen_id")) if stage != "draft" else None
    if stage != "draft" and parent is None:
        raise Unreadable("metadata.json has no parent_gen_id")
    combo = _text(meta.get("combo_id")) if stage == "draft" else None
    if stage == "draft" and combo is None:
        raise Unreadable("metadata.json has no combo_id")
    model = _text(meta.get("llm_model_id"))
    if mode == "copy" or model == "None":  # upstream wrote the string "None" for copy essays
        model = None
    if mode == "llm" and model is None:
        raise Unreadable("metadata.json has no llm_model_id")
    replicate = _replicate(meta.get("replicate"))
    # Each field was checked above; `or ""` only satisfies the type checker.
    if stage == "draft":
        signature = ids.draft_signature(combo or "", template, model or "", replicate)
    elif stage == "essay":
        signature = ids.essay_signature(parent or "", template, None, replicate, copy=True)
    else:
        signature = ids.evaluation_signature(parent or "", template, model or "", replicate)
    return StoredGen(
        stage, gen_id, path, directory, mode, template, model, parent, combo, replicate, signature
    )


def _check_id(gen: StoredGen, report: StoreScan) -> None:
    """Warn when an id is not the hash of its metadata (kept anyway: ids are never changed)."""
    match = re.search(r"-(\d+)$", gen.gen_id)
    index = int(match.group(1)) if match else 0
    expected = ids.gen_id(gen.stage, gen.signature, collision_index=index)
    if expected != gen.gen_id:
        report.warnings.append(
            f"{gen.path}: the id is not the hash of its metadata (signature {gen.signature}"
            f" gives {expected}); kept as is, but a plan naming that signature makes a new one"
        )


def read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise Unreadable(f"{file.name} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise Unreadable(f"{file.name} is not valid JSON ({exc})") from None


def read_text(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable(f"{file.name} is not UTF-8 text") from None


def _text(value: Any) -> str | None:
    """A metadata string, stripped; None when absent or blank."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _replicate(value: Any) -> int:
    """upstream ``signature_from_metadata``: None -> 1, digits or a number -> int (from 1
    to ``REPLICATE_MAX``, as in a spec)."""
    number: Any = None
    if value is None:
        return 1
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,7}", value.strip()):
        number = int(value.strip())
    if number is None or not 1 <= number <= REPLICATE_MAX:
        raise Unreadable(
            f"metadata.json: replicate {quote(value)} is not a whole number from 1 to"
            f" {REPLICATE_MAX:,}"
        )
    return int(number)


def _scan_cohorts(root: Path, report: StoreScan) -> None:
    folder = root / "cohorts"
    if not folder.is_dir():
        return
    for directory in sorted(p for p in folder.iterdir() if p.is_dir()):
        path = f"cohorts/{directory.name}"
        membership = directory / "membership.csv"
        if not COHORT_ID.fullmatch(directory.name):
            report.skipped.append(
                Skip(path, 'not a valid daydream cohort id (letters, digits, "-", "_", ".")')
            )
            continue
        if not membership.is_file():
            report.skipped.append(Skip(path, "no membership.csv"))
            continue
        try:
            refuse_outside(root, directory, ("membership.csv", "spec", "spec/config.yaml"))
            text = read_text(membership)
        except Unreadable as exc:
            report.skipped.append(Skip(path, str(exc)))
            continue
        rows = csv.DictReader(text.lstrip("\ufeff").splitlines())
        if "gen_id" not in (rows.fieldnames or ()):
            report.skipped.append(Skip(path, "membership.csv has no gen_id column"))
            continue
        members = list(dict.fromkeys(g for row in rows if (g := _text(row.get("gen_id")))))
        spec = directory / "spec" / "config.yaml"
        source = spec if spec.is_file() else membership
        try:
            spec_text = text if source is membership else read_text(source)
        except Unreadable as exc:
            report.skipped.append(Skip(path, f"spec/{exc}"))
            continue
        report.cohorts.append(StoredCohort(directory.name, source, spec_text, members))
