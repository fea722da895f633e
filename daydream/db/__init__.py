"""The database: one SQLite file holding the append-only event log, the texts and the
projections.

- ``connection``: ``connect()``, the one opener (pragmas, fork guard, migrations,
  projections built by this version);
- ``transaction``: ``BEGIN IMMEDIATE`` write transactions;
- ``migrations``: the durable schema (``migrations/*.sql``) and its append-only guards;
- ``log``: appending events (applied to the projections in the same transaction) and
  reading them;
- ``texts``: prompts, replies and parsed outputs stored once, by hash;
- ``files``: sizes and write-ahead log checkpoints;
- ``projections``: the tables derived from the log, kept in step with it inside the
  appending transaction, and their replay;
- ``check``: ``daydream db check``, every invariant checked.

Layers inside the package: ``transaction``, ``files``, ``migrations`` and ``texts`` use
nothing else of daydream's storage; ``projections`` builds on them; ``connection``,
``log`` and ``check`` build on the projections.
"""
