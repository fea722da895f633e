"""Cohorts whose scores a test writes itself: results appended as the events a worker
writes (attempt started, responded, completed or failed), with no model at all.

``scored_cohort`` plans ``combos`` combinations x essay templates ``A`` and ``B`` (by
``m1``) x judges (rubric ``judge``, 0-10, by each of ``judges``) x evaluation
replicates, then gives every evaluation the score ``score(row)`` returns for its lineage
(``combo``, ``essay_template``, ``judge``, ``replicate``), or a parse failure where it
returns None: the statistics tests know the true answer because they wrote it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from daydream import events as ev
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.db.texts import put_text
from tests.scenario import ESSAY_BODY, TEMPLATES, cohort, offline_model

ESSAY_TEMPLATES = {
    **TEMPLATES,
    "essay": [
        {"id": "A", "parser": "identity", "max_tokens": 600},
        {"id": "B", "parser": "identity", "max_tokens": 600},
        {"id": "copy", "generator": "copy"},
    ],
}


def start(conn, gen_id: str) -> int:
    """Append the ``attempt.started`` of a generation's first attempt; its token."""
    [token] = append(
        conn,
        [
            ev.AttemptStarted(
                gen_id=gen_id, attempt=1, worker="test", lease_expires_at="2030-01-01T00:00:00Z"
            )
        ],
        actor="test",
    )
    return token


def complete(conn, gen_id: str, text: str, *, score=None, mode="llm", parsed=None) -> None:
    """Record a reply ``text`` and its completion (parsed text ``parsed``, else ``text``)."""
    token = start(conn, gen_id)
    digest = put_text(conn, text)
    append(
        conn,
        [
            ev.GenerationResponded(
                gen_id=gen_id,
                token=token,
                mode=mode,
                prompt_hash=put_text(conn, f"prompt for {gen_id}"),
                raw_hash=digest,
            ),
            ev.GenerationCompleted(
                gen_id=gen_id,
                token=token,
                parsed_hash=put_text(conn, parsed) if parsed is not None else digest,
                score=score,
            ),
        ],
        actor="test",
    )


def fail(conn, gen_id: str, error: str = "no SCORE line in the last lines") -> None:
    """Record a final parse failure (no reply kept)."""
    token = start(conn, gen_id)
    append(
        conn,
        [
            ev.AttemptFailed(
                gen_id=gen_id,
                token=token,
                state="parse_failed",
                error=error,
                retryable=False,
                final=True,
            )
        ],
        actor="test",
    )


def scored_cohort(
    root: Path,
    score: Callable[[dict[str, Any]], float | None],
    *,
    combos: int = 8,
    judges: tuple[str, ...] = ("m1",),
    replicates: int = 1,
    essays: tuple[str, ...] = ("A", "B"),
) -> Path:
    """Plan and score cohort ``k`` in ``root/run.db`` (returned); see the module docstring."""
    models = [offline_model(m) for m in sorted({"m1", *judges})]
    db = cohort(
        root,
        models,
        combos=combos,
        templates=ESSAY_TEMPLATES,
        bodies={("essay", "A"): ESSAY_BODY, ("essay", "B"): ESSAY_BODY},
        axes={
            "essay_template": list(essays),
            "essay_llm": ["m1"],
            "evaluation_llm": list(judges),
            "evaluation_replicate": list(range(1, replicates + 1)),
        },
    )
    conn = connect(db)
    try:
        rows = conn.execute(
            "SELECT g.gen_id, g.stage, g.model_id, g.replicate, e.template_id FROM generations g"
            " LEFT JOIN generations e ON e.gen_id = g.parent_gen_id ORDER BY g.rowid"
        ).fetchall()
        copies = {r[0] for r in conn.execute("SELECT gen_id FROM generations WHERE mode = 'copy'")}
        for gen_id, stage, model, replicate, essay_template in rows:
            if stage != "evaluation":
                mode = "copy" if gen_id in copies else "llm"
                complete(conn, gen_id, f"{stage} text of {gen_id}", mode=mode)
                continue
            lineage = {
                "combo": _combo_of(conn, gen_id),
                "essay_template": essay_template,
                "judge": model,
                "replicate": replicate,
            }
            value = score(lineage)
            if value is None:
                fail(conn, gen_id)
            else:
                text = f"reasoning\nSCORE: {value:g}"
                complete(conn, gen_id, text, score=float(value), parsed=f"{float(value)}\n")
    finally:
        conn.close()
    return db


def _combo_of(conn, gen_id: str) -> str:
    return conn.execute(
        "SELECT combo_id FROM evaluation_scores WHERE gen_id = ?", (gen_id,)
    ).fetchone()[0]


def scipy_interval(sums, counts, *, seed: int, resamples: int = 2000):
    """scipy's percentile bootstrap of sum(sums) / sum(counts) over clusters resampled in
    pairs: the library value daydream's own cluster bootstrap must reproduce."""
    import numpy as np
    from scipy import stats

    return stats.bootstrap(
        (sums, counts),
        lambda s, c, axis: s.sum(axis=axis) / c.sum(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
