"""The appliers of results recorded after the run: ``generation.reparsed``, a stored reply
parsed again with the template's current parser and scale (``daydream reparse``, no model
call), and ``rating.recorded``, a human rating (``daydream label import``), which
``human_ratings`` keeps latest per essay, rubric and rater.

The generation takes the new result (done with its parsed output and score, or failed
with the reason), ``reparses`` keeps one row per reparse with the result it replaced, the
score cells of an evaluation are recomputed from its siblings (a score can now change or
disappear, so a cell cannot just grow), and the children follow the new status: a parent
that now parses unblocks them, one that now fails blocks those still waiting for it.
"""

from __future__ import annotations

from collections.abc import Callable

from daydream import events as ev
from daydream.db.projections.lineage import children_of, set_blocked, unblock_descendants
from daydream.db.projections.search import index_texts
from daydream.db.projections.tally import tally_of

# Every cell of the evaluation's essay x judge, in every cohort holding the evaluation,
# recomputed from the scored evaluations of that cohort.
_RECOUNT_CELLS = """
UPDATE essay_judge_scores AS c SET n = s.n, total = s.total, min = s.low, max = s.high
FROM (
    SELECT m.cohort_id AS cohort_id, g.parent_gen_id AS essay, g.template_id AS template,
        g.model_id AS model, count(g.score) AS n, coalesce(sum(g.score), 0) AS total,
        min(g.score) AS low, max(g.score) AS high
    FROM generations g JOIN cohort_members m ON m.gen_id = g.gen_id
    WHERE (g.parent_gen_id, g.template_id, g.model_id) =
        (SELECT parent_gen_id, template_id, model_id FROM generations WHERE gen_id = ?1)
        AND g.stage = 'evaluation'
        AND m.cohort_id IN (SELECT cohort_id FROM cohort_members WHERE gen_id = ?1)
    GROUP BY m.cohort_id
) AS s
WHERE c.cohort_id = s.cohort_id AND c.essay_gen_id = s.essay
    AND c.evaluation_template = s.template AND c.evaluation_model = s.model
"""


def _generation_reparsed(conn, event_id, e: ev.GenerationReparsed, at):
    stage, status, state, score, parsed_hash = conn.execute(
        "SELECT stage, status, state, score, parsed_hash FROM generations WHERE gen_id = ?",
        (e.gen_id,),
    ).fetchone()
    conn.execute(
        "INSERT INTO reparses (event_id, gen_id, stage, template_version, parser,"
        " parser_version, previous_state, previous_score, previous_parsed_hash, state, score,"
        " parsed_hash, error, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event_id,
            e.gen_id,
            stage,
            e.template_version,
            e.parser,
            e.parser_version,
            state,
            score,
            parsed_hash,
            e.state,
            e.score,
            e.parsed_hash,
            e.error,
            at,
        ),
    )
    ok = e.state == "ok"
    tally = tally_of(conn)
    tally.touch(conn, (e.gen_id,))
    conn.execute(
        "UPDATE generations SET status = ?, state = ?, error = ?, last_error = ?,"
        " parsed_hash = ?, score = ?, written_scale = ?, parsed_with = ? WHERE gen_id = ?",
        (
            "done" if ok else "failed",
            e.state,
            e.error,
            e.error,
            e.parsed_hash,
            e.score,
            e.written_scale,
            e.template_version,
            e.gen_id,
        ),
    )
    index_texts(conn, stage, (("parsed", e.parsed_hash),))  # search finds the new text
    if stage == "evaluation":
        conn.execute(_RECOUNT_CELLS, (e.gen_id,))
    if ok and status == "failed":
        unblock_descendants(conn, e.gen_id)
        tally.touch(conn, children_of(conn, [e.gen_id]))
        conn.execute(
            "UPDATE generations SET status = 'ready' WHERE parent_gen_id = ? AND status = 'waiting'",
            (e.gen_id,),
        )
    elif not ok and status == "done":
        set_blocked(conn, children_of(conn, [e.gen_id]), f"parent {e.gen_id} failed: {e.state}")


def _rating_recorded(conn, event_id, e: ev.RatingRecorded, at):
    conn.execute(
        "INSERT INTO human_ratings (essay_gen_id, evaluation_template, rater, score, note,"
        " template_version, source, event_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (essay_gen_id, evaluation_template, rater) DO UPDATE SET"
        " score = excluded.score, note = excluded.note,"
        " template_version = excluded.template_version, source = excluded.source,"
        " event_id = excluded.event_id, recorded_at = excluded.recorded_at",
        (
            e.essay_gen_id,
            e.evaluation_template,
            e.rater,
            e.score,
            e.note,
            e.template_version,
            e.source,
            event_id,
            at,
        ),
    )


APPLIERS: dict[str, Callable[..., None]] = {
    ev.GenerationReparsed.type: _generation_reparsed,
    ev.RatingRecorded.type: _rating_recorded,
}
