"""Projections: tables derived from the event log, updated in the event's own transaction.

- ``schema``: the tables' DDL and the hash that says which version built them;
- ``apply``: one applier per event type (``planning``: catalog, plans, cohorts;
  ``attempts``: leases and results; ``cells``: the score cells; ``lineage``: walking a
  generation's descendants);
- ``replay``: rebuilding from the log and comparing a replay with the live tables;
- ``views``: the SQL views researchers query, browse and report on.

The queue lives in ``generations`` itself (one row per generation is one task; the
``tasks`` view shows just its queue columns): status ``waiting`` (parent not done),
``ready``, ``running`` (leased: owner, fencing token, expiry; ``slot`` 1 while the lease
holds a pool slot, 0 while it is queued in its worker), ``done``, ``failed``, ``blocked``
(an ancestor failed or was cancelled), ``cancelled``. One row, not a generation and a task
apart: a plan writes a million of them, and each result updates one row.
"""
