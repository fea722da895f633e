"""Building the browse benchmark's database: a finished synthetic cohort, planned the
faithful way and completed with the events a worker writes.

A generated catalog is planned with ``plan_cohort`` (combinations x 5 draft templates x 4
writers, one essay each, 2 rubrics x 2 judges x 2 replicates per essay: 10 generations
per draft); then every ready generation gets ``attempt.started``,
``generation.responded`` and ``generation.completed`` (or ``attempt.failed`` for ~1% of
drafts and ~2% of evaluations), appended in bulk through ``daydream.db.log.append``, so
every projection row comes from the log. Texts are stored the way a worker stores them
(``daydream.db.texts``).

Two kinds of text:

- short (the default): a few hundred bytes each, two words of a 500-word vocabulary in
  every draft and essay for the searches;
- realistic: drafts of ~2 KB, essays of ~6 KB, judge replies of ~1.5 KB, and prompts
  that contain their parent's text (an essay's prompt its draft, an evaluation's prompt
  its essay), as real templates render them.
"""

from __future__ import annotations

import hashlib
import random
import time
from datetime import datetime, timezone
from pathlib import Path

from synthetic import SPEC, synthetic_catalog

COHORT = "bench"
PER_DRAFT = 10  # draft + essay + 8 evaluations
DRAFTS_PER_COMBO = 5 * 4
BATCH = 2000

# Realistic sizes, in bytes of text.
DRAFT_BYTES, ESSAY_BYTES, REPLY_BYTES = 2000, 6000, 1500
_WORDS = [
    "".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=3 + i % 7))
    for i in range(5000)
]


def build(db_path: Path, generations: int, *, realistic: bool = False, log=print) -> float:
    """Plan and complete a synthetic cohort of about ``generations`` generations at
    ``db_path``; returns the seconds it took."""
    from daydream.catalog.recording import import_catalog
    from daydream.db.connection import connect
    from daydream.plan.write import plan_cohort

    start = time.perf_counter()
    combos = max(1, -(-generations // (DRAFTS_PER_COMBO * PER_DRAFT)))
    work = db_path.parent
    conn = connect(db_path)
    # A page cache of up to 2 GB: a million generations' random lookups would otherwise
    # wait on the disk (the build is not what the benchmark measures).
    conn.execute("PRAGMA cache_size = -2000000")
    import_catalog(conn, synthetic_catalog(work, combos, priced=True), actor="bench")
    (work / "combos.txt").write_text("".join(f"combo-{i:06d}\n" for i in range(combos)))
    (work / "spec.yaml").write_text(SPEC)
    plan_cohort(conn, work / "spec.yaml", COHORT, actor="bench")
    log(f"  planned in {time.perf_counter() - start:.0f} s")
    for stage in ("draft", "essay", "evaluation"):
        complete_stage(conn, stage, realistic=realistic)
        log(f"  {stage}s done at {time.perf_counter() - start:.0f} s")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return round(time.perf_counter() - start, 1)


def complete_stage(conn, stage: str, *, realistic: bool = False) -> None:
    """Run every ready generation of ``stage`` as a worker would record it, in batches."""
    from daydream.db.transaction import transaction

    clock = _clock()
    while True:
        ready = conn.execute(
            "SELECT g.gen_id, g.model_id, g.template_id, p.parsed_hash, t.text"
            " FROM generations g LEFT JOIN generations p ON p.gen_id = g.parent_gen_id"
            " LEFT JOIN texts t ON t.hash = p.parsed_hash"
            " WHERE g.status = 'ready' AND g.stage = ? ORDER BY g.gen_id LIMIT ?",
            (stage, BATCH),
        ).fetchall()
        if not ready:
            return
        with transaction(conn):
            _record_batch(conn, stage, ready, realistic, clock)


def _record_batch(conn, stage, ready, realistic, clock) -> None:
    from daydream import events as ev
    from daydream.db.log import append
    from daydream.db.texts import put_hashed_texts, text_hash

    started = [
        ev.AttemptStarted(
            gen_id=row[0], attempt=1, worker="bench", lease_expires_at="2030-01-01T00:00:00Z"
        )
        for row in ready
    ]
    tokens = append(conn, started, actor="worker:bench", clock=clock)
    finished = []
    texts: dict[str, str] = {}
    for (gen_id, model_id, template_id, _parent_hash, parent_text), token in zip(
        ready, tokens, strict=True
    ):
        roll = _roll(gen_id)
        make = _realistic if realistic else _short
        prompt, raw, score = make(stage, gen_id, template_id, roll, parent_text or "")
        prompt_hash, raw_hash = text_hash(prompt), text_hash(raw)
        texts[prompt_hash], texts[raw_hash] = prompt, raw
        finished.append(
            ev.GenerationResponded(
                gen_id=gen_id,
                token=token,
                mode="llm",
                prompt_hash=prompt_hash,
                raw_hash=raw_hash,
                provider="offline",
                model_id=model_id,
                resolved_model=f"offline/{model_id}",
                finish_reason="stop",
                prompt_tokens=len(prompt) // 4,
                completion_tokens=len(raw) // 4,
                latency_s=0.5 + roll % 7 / 10,
                cost=len(prompt) // 4 * 1e-6 + len(raw) // 4 * 4e-6,
                offline=True,
            )
        )
        finished.append(_ending(stage, gen_id, token, roll, raw_hash, score))
    put_hashed_texts(conn, texts.items())  # as a worker stores them
    append(conn, finished, actor="worker:bench", clock=clock)


def _ending(stage, gen_id, token, roll, raw_hash, score):
    from daydream import events as ev

    failing = (stage == "draft" and roll % 100 == 0) or (stage == "evaluation" and roll % 50 == 1)
    if not failing:
        return ev.GenerationCompleted(gen_id=gen_id, token=token, parsed_hash=raw_hash, score=score)
    state = "provider_error" if stage == "draft" else "parse_failed"
    return ev.AttemptFailed(
        gen_id=gen_id,
        token=token,
        state=state,
        error=f"{state}: synthetic failure (gave up after 1 attempt(s))",
        retryable=stage == "draft",
        final=True,
    )


def _short(stage, gen_id, template_id, roll, parent_text):
    prompt = f"{stage} prompt for {gen_id}\n" + "context line\n" * 12
    if stage == "evaluation":
        score = float(roll % 10)
        return prompt, f"The essay {gen_id} is judged here.\n" * 4 + f"SCORE: {score:g}\n", score
    # Two words of a 500-word vocabulary: what a search looks for.
    words = f"It touches on term{roll % 500} and term{roll // 500 % 500}.\n"
    return prompt, f"{stage} text of {gen_id}.\n" + words + "An idea, developed.\n" * 20, None


def _realistic(stage, gen_id, template_id, roll, parent_text):
    """A prompt that holds its parent's text as a template renders it, and a reply of the
    stage's realistic size (seeded by the generation id)."""
    rng = random.Random(roll)
    words = f"It touches on term{roll % 500} and term{roll // 500 % 500}.\n"
    if stage == "draft":
        prompt = f"Brainstorm links between two concepts ({template_id}).\n" + _prose(rng, 400)
        return prompt, words + _prose(rng, DRAFT_BYTES), None
    if stage == "essay":
        prompt = (
            "Write an essay of about a thousand words from these notes. Keep the best idea"
            " and develop it with a mechanism and an example.\n\n<notes>\n"
            + parent_text
            + "\n</notes>\n"
        )
        return prompt, words + _prose(rng, ESSAY_BYTES), None
    score = float(roll % 10)
    prompt = (
        f"You are judging an essay with the rubric {template_id}.\n"
        + _prose(random.Random(template_id), 700)
        + "\n\n<essay>\n"
        + parent_text
        + "\n</essay>\n\nReason step by step, then end with a final line: SCORE: X\n"
    )
    return prompt, _prose(rng, REPLY_BYTES) + f"\nSCORE: {score:g}\n", score


def _prose(rng: random.Random, size: int) -> str:
    """About ``size`` bytes of words in sentences and paragraphs."""
    out: list[str] = []
    length = 0
    while length < size:
        sentence = " ".join(rng.choices(_WORDS, k=rng.randint(8, 20))).capitalize() + "."
        out.append(sentence + ("\n\n" if rng.random() < 0.2 else " "))
        length += len(out[-1])
    return "".join(out).strip() + "\n"


def _roll(gen_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(gen_id.encode(), digest_size=4).digest(), "big")


def _clock():
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return lambda: moment


def an_essay(conn) -> str:
    """A finished essay in the middle of the cohort, for the generation page."""
    return conn.execute(
        "SELECT gen_id FROM generations WHERE stage = 'essay' AND status = 'done'"
        " ORDER BY gen_id LIMIT 1 OFFSET (SELECT essays / 2 FROM cohorts WHERE cohort_id = ?)",
        (COHORT,),
    ).fetchone()[0]
