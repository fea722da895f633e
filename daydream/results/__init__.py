"""Results: what a cohort's scores say, for people.

- ``rows``: a cohort's evaluations and essays with their lineage;
- ``scores``: scores on their scale (high, low, top of scale) and group statistics;
- ``tables`` and ``reports``: the report's tables, built and written as CSV, JSON or HTML;
- ``html``: the self-contained HTML report page;
- ``curation``: ranking essays, exporting them, planning a new cohort from a pick;
- ``text``: every human-readable formatting of results the command line prints.
"""
