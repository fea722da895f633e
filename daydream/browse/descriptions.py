"""What the browser says about each table, view and column (``browse.py`` serves it).

Plain data: table descriptions with their Datasette options (facets, sort order, label
column, page size), column descriptions by column name, and per-table overrides where a
name means something else. ``tests/test_browse.py`` fails when a table, view or column of
a fresh database has no description here.
"""

from __future__ import annotations

from typing import Any

DESCRIPTION = (
    "Structured LLM idea-generation experiments, read-only. Each generation has a page"
    " (every generation id links to it); a cohort has a comparison matrix and a score"
    " pivot; the database page lists canned queries: a cohort's top essays, scores and"
    " failures, and a generation's lineage with its texts."
)
DATABASE_DESCRIPTION = (
    "events is the append-only log; every other table is a projection of it; the views"
    " (plain SQL, also in sqlite3 and plain datasette) are what to browse."
)

TABLES: dict[str, dict[str, Any]] = {
    # the log and the texts
    "events": {
        "description": "The append-only event log: every fact daydream knows, in order."
        " Every other table is rebuilt from it (daydream db rebuild).",
        "sort_desc": "id",
        "facets": ["type", "actor"],
    },
    "texts": {
        "description": "Every large text once, by hash: template bodies, prompts, raw and"
        " parsed outputs, specs, concept descriptions. generation_texts shows them in place."
    },
    # catalog
    "concepts": {
        "description": "Catalog: the concepts combinations are made of.",
        "label_column": "name",
    },
    "concept_descriptions": {
        "description": "Catalog: each concept's description text per level.",
    },
    "combos": {"description": "Catalog: concept combinations (see combos_with_concepts)."},
    "combo_concepts": {"description": "Catalog: the concepts of each combination, in order."},
    "templates": {
        "description": "Catalog: the current version of each prompt template.",
        "facets": ["stage", "parser"],
    },
    "template_versions": {
        "description": "Catalog: every version of every prompt template (generations record"
        " the version they used).",
        "label_column": "name",
        "facets": ["stage"],
    },
    "models": {
        "description": "Catalog: models, their provider, pool and prices. No API key is"
        " ever stored.",
        "label_column": "display_name",
    },
    # planning and running
    "cohorts": {
        "description": "Planned cohorts (see cohort_progress for their progress).",
        "sort_desc": "planned_at",
    },
    "cohort_members": {
        "description": "Which generations belong to which cohort (a generation can be"
        " shared by several).",
        "facets": ["cohort_id", "stage"],
    },
    "generations": {
        "description": "Every planned generation (draft, essay, evaluation): lineage,"
        " status, outcome, score, usage, and its place in the work queue (lease, attempts,"
        " last error); texts by hash (generation_texts shows them).",
        "facets": ["stage", "status", "state", "template_id", "model_id"],
    },
    "tasks": {
        "description": "The work queue: the queue columns of generations (each generation"
        " is one task), with its lease and last error.",
        "facets": ["status", "stage", "pool"],
    },
    "calls": {
        "description": "One row per model call, failed calls included: tokens, cost, latency.",
        "sort_desc": "event_id",
        "facets": ["model_id", "ok", "http_status"],
    },
    "pools": {"description": "Concurrency limits of the model pools (set or adapted)."},
    "essay_judge_scores": {
        "description": (
            "Score cells kept up to date as evaluations are planned and scored: per cohort,"
            " essay and judge, the planned evaluations and n / total / min / max of their"
            " scores. The essay_scores view adds lineage and the mean."
        ),
    },
    "schema_migrations": {"description": "Internal: the applied migrations."},
    "projection_meta": {"description": "Internal: the hash of the projections' DDL."},
    # report views (views.py)
    "evaluation_scores": {
        "description": "One row per evaluation with its lineage, judge, score and outcome state.",
        "facets": ["evaluation_template", "evaluation_model", "state"],
    },
    "essay_scores": {
        "description": "The score pivot, long form: one row per cohort, essay and judge"
        " (evaluation template x judge model) with n, mean, min and max of the scored"
        " evaluations. The wide form is the pivot page (-/pivot?cohort=ID). Filter by cohort_id.",
    },
    "essay_score_summary": {
        "description": "One row per cohort and essay over every scored evaluation.",
    },
    "judge_agreement": {
        "description": "Per cohort, essay and evaluation template: how far the judge models'"
        " means spread, classed like upstream.",
        "facets": ["stability"],
    },
    "top_of_scale": {
        "description": "Scored evaluations at their template's maximum.",
    },
    # browsing views (views.py)
    "cohort_progress": {
        "description": "Progress of each cohort per stage: generations by status, % done"
        " and % finished (done, failed, blocked or cancelled).",
    },
    "generation_texts": {
        "description": "Every generation of every cohort with its parsed output, raw reply"
        " and prompt, shown whole. Filter by cohort_id, stage, gen_id...",
        "facets": ["stage", "state", "template_id", "model_id"],
        "size": 20,
    },
    "combos_with_concepts": {
        "description": "Each combination with its concepts in order.",
    },
    "lineage": {
        "description": "Lineage of every generation: evaluation -> essay -> draft ->"
        " combination -> concepts. Ids link to the generation page.",
        "facets": ["stage", "status"],
    },
    "failures": {
        "description": "Failed, blocked and cancelled generations with their error and raw reply.",
        "facets": ["stage", "state", "model_id"],
        "size": 50,
    },
    "failure_reasons": {
        "description": "Failures grouped by cohort, stage, state and reason, most frequent first.",
    },
    "top_essays": {
        "description": "Essays ranked per cohort and evaluation template: best score per"
        " judge model, averaged over judge models (as `daydream` curation ranks them)."
        " Filter by cohort_id and evaluation_template.",
    },
    "unscored_essays": {
        "description": "Essays left out of top_essays: per cohort and evaluation template,"
        " the essays whose evaluations of it have no score, with the reason (the essay did"
        " not complete, or its evaluations failed, were blocked or have not run).",
    },
    "generation_search": {
        "description": "Full-text search over prompts, raw replies and parsed texts: type"
        " words in the search box (phrases in quotes; words are matched by their stem, so"
        " invent finds inventing). One row per cohort, generation and matching text; fields"
        " says which of its texts matched, gen_id opens its page. Filter by cohort_id and"
        " stage; daydream search QUERY does the same in the terminal.",
        "fts_table": "search_texts_fts",
        "fts_pk": "text_id",
        "facets": ["fields", "stage", "model_id"],
        "size": 20,
    },
    "indexed_texts": {
        "description": "The texts the full-text index holds, by their number in it (the"
        " content of search_texts_fts).",
    },
    "search_texts": {
        "description": "Internal: each generation text the full-text index holds, numbered"
        " (a projection: rebuilt by replay).",
    },
    "search_texts_fts": {
        "description": "The full-text index (SQLite FTS5) of prompts, raw replies and"
        " parsed texts; search it through generation_search.",
    },
    **{
        f"search_texts_fts_{part}": {"description": f"Internal: FTS5's {what} of the full-text index."}
        for part, what in (
            ("data", "pages"),
            ("idx", "term index"),
            ("docsize", "text sizes"),
            ("config", "settings"),
        )
    },
    "model_usage": {
        "description": "Calls, tokens and cost per model over the whole database.",
    },
    "cohort_model_usage": {
        "description": "Calls, tokens and cost per cohort and model (a shared generation"
        " counts in each of its cohorts).",
    },
}

COLUMNS: dict[str, str] = {
    # ids and lineage
    "gen_id": "Generation id (d_ draft, e_ essay, v_ evaluation).",
    "parent_gen_id": "The generation this one was made from (an essay's draft, an"
    " evaluation's essay).",
    "evaluation_gen_id": "The evaluation (evaluation rows only).",
    "essay_gen_id": "The essay (the evaluated essay, for an evaluation).",
    "draft_gen_id": "The draft the essay was written from.",
    "example_gen_id": "One generation of the group, to look at.",
    "cohort_id": "Cohort id.",
    "combo_id": "Concept combination id.",
    "concept_id": "Concept id.",
    "concept_ids": "The combination's concept ids, in order.",
    "concept_names": "The combination's concept names, in order.",
    "concepts": "The combination's concept names, in order.",
    "template_id": "Prompt template id.",
    "template_version": "Version (content hash) of the template used.",
    "model_id": "Model id (empty for copy-mode essays, which make no call).",
    "stage": "draft, essay or evaluation.",
    "replicate": "Replicate number (independent draws of the same generation).",
    "mode": "llm (a model call) or copy (the essay copies its draft's text).",
    "signature": "What makes the generation unique: parent, template, model, replicate.",
    "draft_template": "The draft's template.",
    "draft_model": "The draft's model.",
    "draft_replicate": "The draft's replicate number.",
    "essay_template": "The essay's template.",
    "essay_mode": "llm or copy.",
    "essay_replicate": "The essay's replicate number.",
    "generation_model": "The essay's model, or its draft's model for copy-mode essays.",
    "essay_model": "The essay's model (empty for a copy-mode essay).",
    "evaluation_template": "The judging template (rubric).",
    "evaluation_model": "The judge model.",
    "evaluation_replicate": "The evaluation's replicate number.",
    "judge": "evaluation_template__evaluation_model.",
    "relation": "this, ancestor or descendant.",
    # status and outcome
    "status": "Task status: waiting, ready, running, done, failed, blocked or cancelled.",
    "state": "Outcome: ok, truncated, too_short, parse_failed, refused, provider_error,"
    " template_error, blocked or cancelled (empty while unfinished).",
    "error": "Why it did not complete (empty when ok).",
    "attempts": "Attempts made.",
    "score": "The parsed score (evaluations).",
    "written_scale": "The scale the judge wrote (8/10 -> 10), when it wrote one.",
    "scale_min": "The template's declared minimum score.",
    "scale_max": "The template's declared maximum score.",
    "reason": "The error's first line (blocked children group by their parent's state).",
    # texts
    "prompt_hash": "Hash of the rendered prompt (texts).",
    "raw_hash": "Hash of the raw output (texts).",
    "parsed_hash": "Hash of the parsed output (texts).",
    "text_hash": "Hash of the text (texts).",
    "body_hash": "Hash of the template body (texts; empty for copy templates).",
    "spec_hash": "Hash of the spec file's text (texts).",
    "prompt_text": "The rendered prompt.",
    "raw_text": "The raw model output (kept even when parsing failed).",
    "parsed_text": "The parsed output: what the next stage reads.",
    "hash": "b2: + BLAKE2b-128 of the UTF-8 text.",
    "text_id": "The text's number in the full-text index (search_texts).",
    "fields": "Which texts of the generation the matching text is: parsed, raw, prompt.",
    "text": "The text.",
    "length": "Length in characters.",
    # usage
    "provider": "Provider that answered.",
    "resolved_model": "The model string the provider reported.",
    "finish_reason": "Why the model stopped (stop, length...).",
    "prompt_tokens": "Prompt tokens.",
    "completion_tokens": "Completion tokens.",
    "cost": "Cost in USD (empty or 0 when the model has no prices).",
    "latency_s": "Call latency in seconds.",
    "mean_latency_s": "Mean call latency in seconds.",
    "offline": "1 when the offline dry-run provider answered (not a real model).",
    "calls": "Model calls, failed ones included.",
    "errors": "Failed calls.",
    "ok": "1 when the call succeeded.",
    "http_status": "HTTP status of a failed call.",
    "pool": "Concurrency pool.",
    # times
    "planned_at": "When it was planned (UTC).",
    "finished_at": "When it ended (UTC).",
    "recorded_at": "When it was recorded (UTC).",
    "replanned_at": "When the cohort was last planned again (UTC).",
    "cancelled_at": "When the cohort was cancelled (UTC).",
    "changed_at": "When the limit changed (UTC).",
    "applied_at": "When the migration was applied (UTC).",
    # catalog
    "name": "Display name.",
    "version": "Version: a hash of the entry's content.",
    "source": "Where the entry was imported from.",
    "level": "Description level (sentence, paragraph, article).",
    "size": "Number of concepts.",
    "position": "Position of the concept in the combination.",
    "description": "What the template is for.",
    "parser": "How outputs are parsed (identity, score, essay_idea_last...).",
    "generator": "llm or copy.",
    "settings": "Generation settings (JSON).",
    "defined_event": "The event that defined this version.",
    "provider_model": "The provider's model string.",
    "display_name": "Display name.",
    "price_input": "USD per prompt token.",
    "price_output": "USD per completion token.",
    # cohorts and queue
    "spec_path": "The spec file the cohort was planned from.",
    "drafts": "Drafts in the cohort.",
    "essays": "Essays in the cohort.",
    "evaluations": "Evaluations in the group, scored or not.",
    "throttles": "Times the provider rate-limited it.",
    "releases": "Times a worker gave it back unfinished at a clean shutdown (not an attempt).",
    "not_before": "Not claimable before this time (backoff).",
    "lease_owner": "The worker holding the lease.",
    "lease_token": "Fencing token of the current attempt.",
    "lease_expires_at": "When the lease expires (UTC).",
    "slot": "1 while the running lease holds a slot of its pool; 0 while it is queued in its worker.",
    "last_error": "The last attempt's error.",
    "blocked_reason": "Why it is blocked.",
    "limit": "Current concurrency limit.",
    "ceiling": "Highest limit the pool may grow to.",
    # events
    "id": "Global order of the log.",
    "type": "Event type (noun.past_verb); see docs/events.md.",
    "subject": "What the event is about: a gen id, cohort:ID, template:...",
    "data": "The event's fields (JSON).",
    "actor": "Who wrote it: cli:plan, worker:NAME...",
    "key": "Key.",
    "value": "Value.",
    # aggregates
    "generations": "Generations in the group.",
    "done": "Generations done.",
    "failed": "Generations failed.",
    "blocked": "Generations blocked (an ancestor failed).",
    "cancelled": "Generations cancelled.",
    "running": "Generations whose model call is in flight (their lease holds a pool slot).",
    "queued": "Generations leased ahead by a worker, to start when one of its calls ends.",
    "ready": "Generations ready to run.",
    "waiting": "Generations waiting for their parent.",
    "pct_done": "Percent done.",
    "pct_finished": "Percent finished: done, failed, blocked or cancelled.",
    "models": "The models involved.",
    "n": "Scored evaluations.",
    "total": "Sum of the scores (mean = total / n).",
    "mean": "Mean score of the scored evaluations.",
    "min": "Lowest score.",
    "max": "Highest score.",
    "mean_unit": "Mean score mapped to 0-1 on each template's scale.",
    "judges": "Judges (evaluation template x model) with a score.",
    "judge_models": "The judge models with a score.",
    "range": "max - min of the judge means.",
    "stability": "high, moderate, low or poor agreement, or insufficient_data.",
    "rank": "Rank within the cohort and evaluation template (1 = best).",
    "avg_score": "Mean over judge models of each model's best score.",
    "max_score": "Best score of any judge model.",
    "models_covered": "Judge models that scored the essay.",
    "judge_scores": "Each judge model's best score.",
}

COLUMN_OVERRIDES: dict[tuple[str, str], str] = {
    ("schema_migrations", "version"): "Migration number.",
    ("search_texts", "id"): "The text's number in the full-text index.",
    ("search_texts", "uses"): "Bits: which stages use it as which text (a search's filter).",
    ("unscored_essays", "reason"): "Why it has no score.",
    ("unscored_essays", "evaluations"): "Its planned evaluations of this template.",
    ("search_texts_fts_data", "id"): "Internal (FTS5).",
    ("search_texts_fts_data", "block"): "Internal (FTS5).",
    ("search_texts_fts_idx", "segid"): "Internal (FTS5).",
    ("search_texts_fts_idx", "term"): "Internal (FTS5).",
    ("search_texts_fts_idx", "pgno"): "Internal (FTS5).",
    ("search_texts_fts_docsize", "id"): "Internal (FTS5).",
    ("search_texts_fts_docsize", "sz"): "Internal (FTS5).",
    ("search_texts_fts_config", "k"): "Internal (FTS5).",
    ("search_texts_fts_config", "v"): "Internal (FTS5).",
    ("indexed_texts", "id"): "The text's number in the full-text index.",
    ("schema_migrations", "name"): "Migration file name.",
    ("combos", "level"): "Description level the combination's concepts are shown at.",
    ("cohorts", "evaluations"): "Evaluations in the cohort.",
    ("calls", "error"): "The failed call's error.",
    ("calls", "event_id"): "The event that recorded the call.",
    ("calls", "offline"): "1 when the offline dry-run provider answered.",
    ("model_usage", "ok"): "Successful calls.",
    ("cohort_model_usage", "ok"): "Successful calls.",
    ("model_usage", "offline"): "1 when any call was answered by the offline provider.",
    ("cohort_model_usage", "offline"): "1 when any call was answered by the offline provider.",
    ("pools", "reason"): "Why the limit changed.",
    ("cohort_progress", "generations"): "Generations of the cohort at this stage.",
    ("failure_reasons", "generations"): "Generations with this reason.",
    ("judge_agreement", "judges"): "Judge models with a mean score.",
    ("judge_agreement", "mean"): "Mean of the judge models' means.",
    ("judge_agreement", "min"): "Lowest judge-model mean.",
    ("judge_agreement", "max"): "Highest judge-model mean.",
    ("essay_score_summary", "judges"): "Judges (evaluation template x model) with a score.",
    ("tasks", "status"): "waiting, ready, running, done, failed, blocked or cancelled.",
    ("tasks", "attempts"): "Attempts made.",
    ("template_versions", "name"): "Template name.",
    ("templates", "name"): "Template name.",
    ("concepts", "name"): "Concept name.",
}
