"""The catalog: the named things a cohort spec refers to, loaded from a directory.

A catalog holds **concepts** (a name plus texts at the levels sentence, paragraph and
article), **combos** (ordered lists of concepts and the level to show them at),
**templates** (Jinja bodies per stage with their parser, generator and settings),
**models** (a provider, the provider's model string, a concurrency pool and prices) and
optional **providers** (OpenAI-compatible endpoints beyond `providers.DEFAULT_PROVIDERS`).
`load_catalog` reads one directory in either layout and returns typed, frozen objects; it
touches nothing but the files (no database, no network, no environment): recording them
in the event log is ``recording.import_catalog``'s job, and ``registry`` reads them back.

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
