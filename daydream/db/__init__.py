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
- ``check``: ``daydream db check``, every invariant checked.
"""
