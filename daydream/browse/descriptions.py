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
        "description": "One row per model call, failed calls included: HTTP status, tokens,"
        " cost, the time at the server (latency_s) and the wait for a pool slot before it.",
        "sort_desc": "event_id",
        "facets": ["model_id", "ok", "http_status"],
    },
    "pools": {"description": "Concurrency limits of the model pools (set or adapted)."},
    "pool_stops": {
        "description": "Pools stopped by an error no retry can fix (a rejected key, an unknown"
        " model): their generations stay pending until a run resumes them.",
    },
    "endpoints": {
        "description": "Endpoints (base URLs) that were ever down: status down while workers"
        " wait for them and probe them; their calls wait, not fail.",
        "facets": ["status", "provider"],
    },
    "essay_judge_scores": {
        "description": (
            "Score cells kept up to date as evaluations are planned and scored: per cohort,"
            " essay and judge, the planned evaluations and n / total / min / max of their"
            " scores. The essay_scores view adds lineage and the mean."
        ),
    },
    "cohort_counts": {
        "description": "Counters: a cohort's generations per stage, status (queued: a lease"
        " held ahead, without a pool slot), outcome state, model and failure reason, kept"
        " with the log (cohort_progress, failure_reasons and daydream status read them).",
    },
    "model_calls": {
        "description": "Counters: calls, tokens, cost and latency per model over the whole"
        " database, kept with the log (model_usage shows them).",
    },
    "cohort_model_calls": {
        "description": "Counters: calls, tokens, cost and latency per cohort and model, kept"
        " with the log (cohort_model_usage shows them).",
    },
    "cohort_judges": {
        "description": "Counters: per cohort and judge (evaluation template x model), its"
        " score cells, planned evaluations and scored ones.",
    },
    "essay_rubric_scores": {
        "description": "Per cohort, essay and evaluation template: planned evaluations,"
        " judge models with a score, the mean of their best scores and the best (empty"
        " while none has a score). top_essays ranks from it; unscored_essays lists the rest.",
    },
    "reparses": {
        "description": "One row per reply parsed again by daydream reparse (no model call):"
        " the template version and parser version used, the new result and the one it"
        " replaced (previous_*).",
        "sort_desc": "event_id",
        "facets": ["stage", "previous_state", "state", "parser_version"],
    },
    "human_ratings": {
        "description": "Human ratings recorded by daydream label import: the latest per"
        " essay, rubric and rater (earlier ones stay in the log). essay_ratings shows them"
        " beside the judges' scores.",
        "facets": ["evaluation_template", "rater"],
    },
    "essay_ratings": {
        "description": "Per essay and rubric with human ratings: the raters' scores and"
        " mean beside the judges' scored evaluations and their mean (all cohorts).",
        "facets": ["evaluation_template"],
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
    "reasoning_hash": "Hash of a reasoning model's reasoning, sent apart from the reply (texts).",
    "reasoning_text": "A reasoning model's reasoning, sent apart from the reply (never parsed).",
    "reasoning_tokens": "Reasoning tokens the provider counted (part of the completion tokens).",
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
    "cost": "Cost in USD (empty, unknown, when the model has no prices).",
    "latency_s": "Call latency in seconds: the time at the server (the HTTP call).",
    "mean_latency_s": "Mean call latency in seconds: the time at the server.",
    "slot_wait_s": "Seconds the task waited in its worker for a pool slot before the call.",
    "mean_slot_wait_s": "Mean seconds a call waited in its worker for a pool slot.",
    "offline": "1 when the offline dry-run provider answered (not a real model).",
    "calls": "Model calls, failed ones included.",
    "errors": "Failed calls.",
    "ok": "1 when the call succeeded.",
    "http_status": "HTTP status of the reply (empty: no reply, or the offline provider).",
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
    "deferrals": "Times its call met a down endpoint or a stopped pool (not an attempt).",
    "reserved_usd": "Under a budget: the most the running call can cost, held against it.",
    "budget_usd": "The spec's cap on what the cohort's calls may cost (USD).",
    "endpoint": "The endpoint (base URL) the call went to.",
    "down_since": "When the endpoint went down (UTC).",
    "message": "Why the pool stopped: provider, model, the server's words and the fix.",
    "stopped_at": "When the pool stopped (UTC).",
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
    ("generations", "parsed_with"): "The template version whose parser and scale gave"
    " the parsed output after daydream reparse (empty: the planned version).",
    ("reparses", "event_id"): "The generation.reparsed event.",
    ("reparses", "parser_version"): "The parsers' version (daydream.parsers.PARSER_VERSION).",
    ("reparses", "previous_state"): "The outcome state before the reparse.",
    ("reparses", "previous_score"): "The score before the reparse.",
    ("reparses", "previous_parsed_hash"): "The parsed output's hash before the reparse.",
    ("human_ratings", "rater"): "Who rated (as written in the sheet).",
    ("human_ratings", "score"): "The rater's score, on the rubric's scale.",
    ("human_ratings", "note"): "The rater's note.",
    ("human_ratings", "template_version"): "The rubric version whose scale checked it.",
    ("human_ratings", "source"): "The file it was imported from.",
    ("human_ratings", "event_id"): "The rating.recorded event.",
    ("essay_ratings", "ratings"): "Human ratings of the essay on this rubric.",
    ("essay_ratings", "human_scores"): "Each rater's score.",
    ("essay_ratings", "human_mean"): "Mean of the human ratings.",
    ("essay_ratings", "judge_mean"): "Mean of the judges' scored evaluations.",
    ("essay_ratings", "judge_scores"): "Each scored evaluation: judge model and score.",
    ("schema_migrations", "version"): "Migration number.",
    ("cohort_counts", "status"): "Task status; queued: running without a pool slot.",
    ("cohort_counts", "state"): "Outcome state (empty while unfinished).",
    ("cohort_counts", "model_id"): "Model id (empty for copy-mode essays).",
    ("cohort_counts", "reason"): "For failed, blocked and cancelled generations: the"
    " error's first line (blocked children group by their parent's state); else empty.",
    ("cohort_judges", "essays"): "Essays with evaluations by this judge.",
    ("cohort_judges", "evaluations"): "Evaluations by this judge, scored or not.",
    ("essay_rubric_scores", "evaluations"): "Its planned evaluations of this template.",
    ("essay_rubric_scores", "judges"): "Judge models with a scored evaluation of it.",
    **{
        (table, column): text
        for table in ("model_calls", "cohort_model_calls")
        for column, text in (
            ("model_id", "Model id (empty for calls without one)."),
            ("latency_total", "Sum of the calls' latencies in seconds (over latency_n)."),
            ("latency_n", "Calls with a latency."),
            ("slot_wait_total", "Sum of the calls' waits for a pool slot in seconds."),
            ("slot_wait_n", "Calls with a slot wait."),
            ("unpriced", "Successful calls with no cost (the model has no prices)."),
            ("offline", "1 when the offline dry-run provider answered some calls."),
        )
    },
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
    ("endpoints", "status"): "down while workers wait for it; up once a probe found it back.",
    ("endpoints", "pool"): "The pool of the call that found it down.",
    ("endpoints", "error"): "What the failing call or probe said.",
    ("endpoints", "changed_at"): "When its status last changed (UTC).",
    ("pool_stops", "model_id"): "The model whose call stopped the pool.",
    ("endpoints", "endpoint"): "The base URL, without credentials.",
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
