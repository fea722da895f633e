"""Legacy import: an upstream (Dagster) data root recorded as events, keeping its ids.

``store`` reads the upstream tree, ``resolve`` decides what can be imported, ``record``
writes it, and ``importer`` is the entry point (``read_legacy``, ``import_legacy``).

The upstream store is a directory tree: ``1_raw/`` (the catalog),
``gens/<stage>/<gen_id>/`` (``metadata.json``, ``prompt.txt``, ``raw.txt``,
``raw_metadata.json``, ``parsed.txt``, ``parsed_metadata.json``) and
``cohorts/<id>/membership.csv``; ``store`` reads it. ``import_legacy()`` writes the
events that planning and the workers would have written for it:

- the catalog, exactly as ``daydream catalog import DATA_ROOT/1_raw`` would;
- ``model.defined`` for each model id the metadata names but the catalog lacks (provider
  openrouter, provider model = the id: what upstream sent for an unknown id), because a
  generation must reference a model;
- ``cohort.planned`` per upstream cohort, plus one cohort (``legacy`` by default) for the
  imported generations no ``membership.csv`` lists; ``generations.planned`` batches create
  every generation once, parents first, in its first cohort, and link it to the others;
- per generation with a ``raw.txt``: ``attempt.started`` (its id is the token), then
  ``generation.responded`` (prompt and raw texts) and either ``generation.completed``
  (parsed text; an evaluation's score is the float of parsed.txt's last line, as upstream
  read it) or, without ``parsed.txt``, a final ``attempt.failed`` (state ``truncated``
  when raw_metadata says so, else ``parse_failed``). A generation without ``raw.txt`` stays
  planned: running its cohort runs it.

Invariants:

- Ids are upstream's, unchanged. The signature is upstream's canonical string
  (``signature_from_metadata``): for llm essays it lacks the model (the upstream bug that
  ``ids`` fixes with v2 signatures), so new plans reuse imported drafts, copy essays and
  evaluations of those, but not llm essays (name those with an ``essay_id`` column).
- All or nothing: everything is written in one ``BEGIN IMMEDIATE`` transaction; the data
  root is only read.
- Idempotent: a generation id already in the database is left alone (reported as already
  imported); an unchanged store imports to zero events.
- Deterministic: stages in the order draft, essay, evaluation, generation ids sorted.
- Whatever cannot be imported is skipped with its reason, and so are its descendants.
"""
