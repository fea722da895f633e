"""Planning: compiled spec rows -> generations with ids and parents -> planning events.

- ``derivation``: rows -> generations (pure: reads the catalog, writes nothing);
- ``write``: ``plan_cohort()``, the one all-or-nothing planning transaction;
- ``pipeline``: a big plan's derivation in a second process while this one writes;
- ``registry``: the catalog a plan checks against (with combinations from concept pools);
- ``report`` and ``cost``: what a plan tells the user, and its cost range.
"""
