"""Browsing: Datasette over a daydream database, read-only, described for researchers.

- ``app``: ``daydream browse`` (a Datasette with daydream's settings, served on loopback);
- ``hooks``: the Datasette plugin, an entry point: descriptions, canned queries, readable
  texts, links and read-only connections for every daydream database, in ``daydream
  browse`` and plain ``datasette`` alike;
- ``metadata``, ``descriptions`` and ``queries``: what it says about each table, view and
  column, and its canned queries.
"""
