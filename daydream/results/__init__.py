"""Results: what a cohort's scores say, for people.

- ``rows``: a cohort's evaluations and essays with their lineage;
- ``scores``: scores on their scale (high, low, top of scale) and group statistics;
- ``inference``: 95% intervals that resample combinations, paired tests, Holm;
- ``reliability``: Krippendorff's alpha, intraclass correlations, calibration to humans;
- ``comparison``: ``daydream compare`` (levels of an axis, or two cohorts, on matched units);
- ``labels``: the raters' sheet and their ratings recorded as events;
- ``tables`` and ``reports``: the report's tables, built and written as CSV, JSON or HTML;
- ``html``, ``html_inference``, ``markup``: the self-contained HTML report page;
- ``curation``: ranking essays, exporting them, planning a new cohort from a pick;
- ``text``: every human-readable formatting of results the command line prints;
- ``frames``: the tables as pandas DataFrames for notebooks, re-exported here::

      import daydream.results as dr
      dr.pivot("daydream.db", "demo")

Importing this package stays light: ``frames`` imports pandas and the reports only when a
frame is asked for. (No frame is named after a submodule: importing one would set the
package attribute of its name.)
"""

from __future__ import annotations

# The frames (their names are frames.__all__); frames imports pandas and the reports only
# when a frame is asked for.
from daydream.results.frames import *  # noqa: F403
from daydream.results.frames import __all__ as __all__
