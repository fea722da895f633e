"""Text for people: every human-readable rendering of a result that the command line
(and the demo) prints. The library returns data; these turn it into lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from daydream.results.rows import ESSAY_AXIS_TITLES
from daydream.vocabulary import INFRASTRUCTURE_STATES

if TYPE_CHECKING:  # for annotations only: `daydream status` need not import the runner
    from daydream.plan.report import PlanReport
    from daydream.queue.cohorts import Status
    from daydream.runner.rehearsal import Rehearsal
    from daydream.runner.run import RunSummary


def format_plan(report: PlanReport) -> str:
    lines = [
        f"cohort {report.cohort_id}{' (dry run: nothing written)' if report.dry_run else ''}:"
        f" {report.rows} spec row(s)",
        f"  {'stage':<11}{'in cohort':>10}{'new':>8}{'shared':>8}{'completed':>11}",
    ]
    for stage, c in report.stages.items():
        lines.append(f"  {stage:<11}{c.in_cohort:>10}{c.new:>8}{c.shared:>8}{c.completed:>11}")
    if report.new_calls:
        calls = ", ".join(f"{m} {n}" for m, n in report.new_calls.items())
        lines.append(f"  new model calls: {calls}")
        estimate = report.estimate() or {}
        if estimate.get("high"):
            unknown = "" if estimate["complete"] else " + unknown"
            lines.append(
                f"  estimated cost: ${report.cost_low:.2f} - ${report.cost_high:.2f}{unknown} (rough; `daydream run --rehearse` forecasts from real prompts)"
            )
        if report.unpriced_models:
            lines.append(
                f"  no prices for: {', '.join(report.unpriced_models)} (not in the estimate)"
            )
    for note in report.notes:
        lines.append(f"  note: {note}")
    if not report.dry_run:
        lines.append(f"  {report.events} event(s) written")
    return "\n".join(lines)


def format_report(summary: dict[str, Any], written: list[Path]) -> str:
    s = summary
    lines = [
        f"cohort {s['cohort_id']}: {s['evaluations']} evaluation(s), {s['scored']} scored"
        f" ({s['scored_pct'] if s['scored_pct'] is not None else 0}%), {s['failed']} failed,"
        f" {s['blocked_or_cancelled']} blocked or cancelled, {s['unfinished']} unfinished",
        f"  {s['essays']} essay(s) ({s['copy_essays']} copy-mode), {len(s['judges'])} judge(s)",
    ]
    if s["by_evaluation_template"]:
        columns = ("scale", "count", "mean", "std", "min", "max", "high", "low", "top_of_scale")
        width = max(
            len("evaluation template"),
            *(len(r["evaluation_template"]) for r in s["by_evaluation_template"]),
        )
        lines.append(
            f"  {'evaluation template':<{width}}"
            + "".join(f"{c.replace('top_of_scale', 'top'):>7}" for c in columns)
        )
        lines[-1] += f"  {'95% CI (combinations)':>22}"
        for row in s["by_evaluation_template"]:
            cells = "".join(f"{'' if row[c] is None else row[c]:>7}" for c in columns)
            lines.append(f"  {row['evaluation_template']:<{width}}{cells}  {_interval(row):>22}")
    if any(_interval(r).endswith("*") for r in s["by_evaluation_template"]):
        lines.append(
            f"  * fewer than {_few_clusters()} combinations: the interval is too narrow, read it"
            " as rough"
        )
    lines += [f"  {line}" for line in format_reliability(s.get("reliability", []))]
    for r in s.get("calibration", []):
        lines.append(
            f"  against human ratings, {r['evaluation_template']} {r['evaluation_model']}:"
            f" Spearman {r['spearman']}, Kendall {r['kendall']}, mean bias {r['mean_bias']}"
            f" over {r['essays']} essays ({r['raters']} raters)"
        )
    agreement = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["agreement"].items())
    lines.append(f"  detail, judge agreement classes (essay x evaluation template): {agreement}")
    lines.append(f"  top of scale: {s['top_of_scale']} evaluation(s)")
    if written:
        lines.append(
            f"wrote {len(written)} file(s) to {written[0].parent}: {', '.join(p.name for p in written)}"
        )
    return "\n".join(lines)


def format_reliability(rows: list[dict[str, Any]]) -> list[str]:
    """One line per rubric and scope: Krippendorff's alpha (with its reading) and the ICC."""
    if not rows:
        return []
    lines = ["judge reliability (Krippendorff's alpha, interval; intraclass correlation):"]
    for r in rows:
        who = "between judge models" if r["evaluation_model"] is None else (
            f"between replicates of {r['evaluation_model']}"
        )
        alpha = "n/a" if r["alpha"] is None else f"{r['alpha']:.3f}"
        icc = "n/a" if r["icc"] is None else f"{r['icc']:.3f}"
        lines.append(
            f"  {r['evaluation_template']}, {who} ({r['coders']}): alpha {alpha}"
            f" ({r['alpha_reading']}, {r['essays']} essays), {r['icc_form']} {icc}"
            f" ({r['icc_essays']} essays scored by all)"
        )
    return lines


def _few_clusters() -> int:
    from daydream.results.inference import FEW_CLUSTERS  # numpy: imported for reports only

    return FEW_CLUSTERS


def _interval(row: dict[str, Any]) -> str:
    if row.get("ci_low") is None:
        return "n/a (one combination)" if row.get("ci_clusters") == 1 else ""
    few = "*" if row["ci_clusters"] < _few_clusters() else ""
    return f"{row['ci_low']:g} to {row['ci_high']:g} ({row['ci_clusters']}){few}"


def format_ranking(ranking: Any) -> str:
    """The ranking as a table (the combination and every other axis that varies among the
    ranked essays), then the essays left unranked for want of a score, with the reason."""
    keys = ["selection_rank", "essay_gen_id", "avg_score", "max_score", "models_covered"]
    keys += [f"score__{m}" for m in ranking.models]
    header = ["rank", "essay", "avg", "max", "models", *ranking.models]
    for axis, title in _RANKED_AXES:
        if axis == "combo_id" or len({str(r.get(axis)) for r in ranking.rows}) > 1:
            keys.append(axis)
            header.append(title)
    table = [header, *(["" if r[k] is None else str(r[k]) for k in keys] for r in ranking.rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    if ranking.unscored:
        lines.append(
            f"not ranked: {len(ranking.unscored)} essay(s) with no scored {ranking.template}"
            " evaluation"
        )
        lines += [f"  {u['essay_gen_id']}: {u['reason']}" for u in ranking.unscored]
    return "\n".join(lines)


_RANKED_AXES = ESSAY_AXIS_TITLES


def format_legacy(report: Any) -> str:
    lines = [f"legacy store {report.source}"]
    if report.catalog:
        added = ", ".join(f"{n} {k}" for k, n in report.catalog.added.items() if n)
        changed = ", ".join(f"{n} {k}" for k, n in report.catalog.changed.items() if n)
        lines.append(
            f"  catalog: {added or 'nothing'} new"
            + (f", {changed} changed" if changed else "")
        )
    lines.append(f"  {'stage':<11}{'done':>6}{'failed':>8}{'planned':>9}{'already imported':>18}")
    for stage, counts in report.imported.items():
        lines.append(
            f"  {stage:<11}{counts['done']:>6}{counts['failed']:>8}{counts['planned']:>9}"
            f"{report.already[stage]:>18}"
        )
    if report.cohorts:
        lines.append(f"  cohorts created: {', '.join(report.cohorts)}")
    if report.linked:
        members = ", ".join(f"{c} {n}" for c, n in report.linked.items())
        lines.append(f"  generations added to cohorts: {members}")
    if report.models_added:
        lines.append(
            f"  models added (not in llm_models.csv; provider openrouter):"
            f" {', '.join(report.models_added)}"
        )
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)}:")
        lines += [f"    {skip}" for skip in report.skipped]
    lines.append(f"  {report.events} event(s) written")
    return "\n".join(lines)


def format_status(status: Status) -> str:
    lines = [f"cohort {status.cohort or '(all)'}:"]
    lines.append(f"  {'stage':<11}" + "".join(f"{s:>10}" for s in ("done", "failed", "blocked", "cancelled", "running", "queued", "ready", "waiting")))
    for stage, counts in status.stages.items():
        if sum(counts.values()):
            lines.append(f"  {stage:<11}" + "".join(f"{counts[s]:>10}" for s in ("done", "failed", "blocked", "cancelled", "running", "queued", "ready", "waiting")))
    if status.states:
        lines.append("  states: " + ", ".join(f"{k} {v}" for k, v in status.states.items()))
    for m in status.models:
        label = " (offline dry-run)" if m["offline"] else ""
        cost = "cost unknown (no prices)" if m["cost"] is None else f"${m['cost']:.4f}" if m["cost"] else "-"
        lines.append(
            f"  model {m['model_id']}{label}: {m['ok'] or 0} ok, {m['errors'] or 0} errors,"
            f" {m['prompt_tokens']:,} prompt + {m['completion_tokens']:,} completion tokens, {cost}"
        )
    for p in status.pools:
        grows = f", grows back to {p['ceiling']}" if p["ceiling"] > p["limit"] else ""
        lines.append(
            f"  pool {p['pool']}: {p['in_flight']} call(s) in flight of a limit of {p['limit']}"
            f"{grows}, {p['queued']} queued (all cohorts)"
        )
    lines += [f"  {stop['message']}" for stop in status.stopped]
    for down in status.down:
        lines.append(
            f"  endpoint {down['endpoint']} (pool {down['pool']}) down for {down['down_s']:.0f} s:"
            f" {down['error']}"
        )
    return "\n".join(lines)


def format_failures(status: Status, db_path: Path | str) -> str:
    """The failures grouped (count, status and state, an example, the reason), and where
    to see them all in ``daydream browse``; "" when there are none."""
    if not status.failures:
        return ""
    lines = ["failures (count, status/state, an example, the reason):"]
    for f in status.failures:
        lines.append(f"  {f['count']:>6} {f['status']}/{f['state']} e.g. {f['example']}: {f['reason']}")
    name = Path(db_path).stem
    where = f"?cohort_id={status.cohort}" if status.cohort else ""
    lines.append(
        f"  all of them in `daydream browse --db {db_path}`: /{name}/failure_reasons{where}"
        f" (grouped), /{name}/failures{where} (each, with its raw reply)"
    )
    return "\n".join(lines)


def format_run_end(summary: RunSummary) -> str:
    """Why a run ended with work left, or with infrastructure failures (one line each; ""
    when it ended well): for ``summary.outcome`` (``runner.run.RunSummary``)."""
    status, outcome = summary.status, summary.outcome
    left = f"{status.remaining} generation(s) are still pending"
    if outcome == "pool_stopped":
        lines = [stop["message"] for stop in status.stopped] or ["a pool was stopped"]
        lines[-1] += f"; {left}, none failed by it: run the same command again once fixed"
        return "\n".join(lines)
    if outcome == "outage":
        lines = [
            f"stopped: endpoint {d['endpoint']} has been down for {d['down_s']:.0f} s, past the"
            f" outage limit (last error: {d['error']})"
            for d in status.down
        ] or ["stopped: an endpoint stayed down past the outage limit"]
        lines[-1] += f"; {left}, none failed: start the server, then run the same command again"
        return "\n".join(lines)
    if outcome == "budget":
        spent = f"${status.cost:.4f}" + (" + unknown" if status.unpriced_models else "")
        return (
            f"stopped: the budget of ${summary.budget_usd:g} leaves no room for another call"
            f" ({spent} spent); {left}; raise --max-cost (or the spec's budget_usd) to go on"
        )
    if outcome == "failures":
        count = sum(status.states.get(state, 0) for state in INFRASTRUCTURE_STATES)
        return (
            f"{count} generation(s) ended with an infrastructure failure (see the failures"
            " above); fix the cause, then: daydream retry COHORT --failed"
        )
    if outcome == "error":
        return (
            f"{left}: the workers kept dying ({summary.restarts} restarts; see their errors"
            " above); run the same command again to resume"
        )
    return ""


def format_progress(status: Status, elapsed: float, rate: float) -> str:
    parts = []
    for stage, counts in status.stages.items():
        if sum(counts.values()) == 0:
            continue
        total = sum(counts.values())
        parts.append(
            f"{stage} {counts['done']}/{total}"
            + (f" ({counts['failed']} failed)" if counts["failed"] else "")
            + (f" ({counts['running']} running)" if counts["running"] else "")
            + (f" ({counts['queued']} queued)" if counts["queued"] else "")
        )
    remaining = status.remaining
    eta = f"ETA {remaining / rate:,.0f}s" if rate > 0 and remaining else ""
    tokens = status.prompt_tokens + status.completion_tokens
    cost = f" ${status.cost:.4f}" if status.cost else ""
    if status.unpriced_models:
        cost += " + unknown" if status.cost else " cost unknown"
    waits = [
        f"pool {d['pool']}: endpoint down {d['down_s']:.0f} s, retrying" for d in status.down
    ]
    waits += [f"pool {stop['pool']} stopped" for stop in status.stopped]
    return (
        f"[{elapsed:6.1f}s] " + " | ".join(parts) + f" | {rate:,.1f}/s {eta} | {tokens:,} tok{cost}"
        + "".join(f" | {wait}" for wait in waits)
    )


def format_rehearsal(result: Rehearsal) -> str:
    lines = [f"rehearsal of cohort {result.cohort or '(all)'} on the offline provider (scratch copy; the database is untouched):"]
    if not result.forecast and not result.problems:
        lines.append("  nothing left to run")
    for item in result.forecast:
        cost = (
            f"${item['cost_low']:.4f} - ${item['cost_high']:.4f}" if item["cost_low"] is not None else "no price"
        )
        lines.append(
            f"  {item['stage']:<11} {item['model']:<16} {item['calls']:>6} calls"
            f"  {item['prompt_tokens']:>9,} prompt tok  {item['output_tokens_low']:,}-{item['output_tokens_high']:,} output tok  {cost}"
        )
    if result.forecast:
        span = result.cost_range()
        total = f"${span['low']:.4f} - ${span['high']:.4f}" if span["low"] is not None else "unknown"
        if span["low"] is not None and not span["complete"]:
            total += " + unknown"
        lines.append(f"  forecast total: {total}")
    if result.unpriced:
        lines.append(f"  no prices for: {', '.join(result.unpriced)}")
    if result.setup:
        lines.append("  a real run would stop before its first call:")
        lines.extend(f"    {problem}" for problem in result.setup)
    if result.problems:
        lines.append("  problems (fix before spending money):")
        for p in result.problems:
            lines.append(f"    {p['stage']}/{p['template_id']}: {p['n']} {p['state']} e.g. {p['example']}: {p['error']}")
    else:
        lines.append("  no template errors, every reply parsed")
    return "\n".join(lines)


def format_comparisons(result: Any) -> str:
    """Per rubric, one paragraph per pair of levels: the sentence, then the numbers."""
    subject = (
        f"cohort {result.cohorts[0]} against cohort {result.cohorts[1]}"
        if result.axis == "cohort"
        else f"{result.axis} in cohort {result.cohorts[0]}"
    )
    lines = [f"compare {subject} (b minus a; 95% intervals resample combinations):"]
    template = None
    for c in result.comparisons:
        if c["template"] != template:
            template = c["template"]
            lines.append(f"  rubric {template}, matched on {c['matched_on']}:")
        lines.append(f"    {c['b']} vs {c['a']}: {c['summary']}")
        unmatched = c["unmatched_a"] + c["unmatched_b"]
        if unmatched and c["n_pairs"]:
            lines.append(
                f"      left out: {c['unmatched_a']} unit(s) of {c['a']} and"
                f" {c['unmatched_b']} of {c['b']} without a match"
            )
    if not result.comparisons:
        lines.append("  no scored evaluations to compare")
    return "\n".join(lines)


def format_reparse(report: Any) -> str:
    """How many replies were parsed again, what changed (old -> new state) and examples."""
    scope = " ".join(
        part
        for part in (
            f"stage {report.stage}" if report.stage else "",
            f"template {report.template}" if report.template else "",
        )
        if part
    )
    head = (
        f"reparse of cohort {report.cohort_id}{f' ({scope})' if scope else ''} with parser"
        f" version {report.parser_version}, no model call"
        f"{' (dry run: nothing written)' if report.dry_run else ''}:"
    )
    lines = [
        head,
        f"  {report.examined} stored replies parsed again: {report.changed} changed,"
        f" {report.examined - report.changed} unchanged; {report.skipped} without a reply"
        " or still running left alone",
    ]
    for transition, count in sorted(report.transitions.items()):
        lines.append(f"    {transition}: {count}")
    for example in report.examples:
        reason = f" ({example['error']})" if example["error"] else ""
        lines.append(f"    e.g. {example['gen_id']}: {example['before']} -> {example['after']}{reason}")
    if report.moved:
        lines.append(
            f"  {report.moved} generation(s) changed while their replies were parsed (a worker"
            " retried them): left alone; run reparse again once it is done"
        )
    if report.stale_children:
        lines.append(
            f"  note: {report.stale_children} finished child generation(s) were made from a"
            " parsed text that has now changed; they keep their results"
        )
    if not report.dry_run:
        lines.append(
            f"  {report.events} event(s) written; the previous results stay in the log"
            " (table reparses lists both)"
        )
    return "\n".join(lines)
