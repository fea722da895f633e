"""Text for people: every human-readable rendering of a result that the command line
(and the demo) prints. The library returns data; these turn it into lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daydream.plan.report import PlanReport
from daydream.queue.cohorts import Status
from daydream.results.rows import ESSAY_AXIS_TITLES
from daydream.runner.rehearsal import Rehearsal


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
        if report.cost_high > 0:
            lines.append(
                f"  estimated cost: ${report.cost_low:.2f} - ${report.cost_high:.2f} (rough; `daydream run --rehearse` forecasts from real prompts)"
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
        for row in s["by_evaluation_template"]:
            cells = "".join(f"{'' if row[c] is None else row[c]:>7}" for c in columns)
            lines.append(f"  {row['evaluation_template']:<{width}}{cells}")
    agreement = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["agreement"].items())
    lines.append(f"  judge agreement (essay x evaluation template): {agreement}")
    lines.append(f"  top of scale: {s['top_of_scale']} evaluation(s)")
    if written:
        lines.append(
            f"wrote {len(written)} file(s) to {written[0].parent}: {', '.join(p.name for p in written)}"
        )
    return "\n".join(lines)


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
        cost = f"${m['cost']:.4f}" if m["cost"] else "-"
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
    return "\n".join(lines)


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
    return (
        f"[{elapsed:6.1f}s] " + " | ".join(parts) + f" | {rate:,.1f}/s {eta} | {tokens:,} tok{cost}"
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
        lines.append(f"  forecast total: ${result.cost_low:.4f} - ${result.cost_high:.4f}")
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


def format_search(hits: list[Any]) -> str:
    """Search results: one line per generation, then its best passage, indented."""
    if not hits:
        return "no generation matches"
    lines = []
    for hit in hits:
        made_by = " / ".join(v for v in (hit.template_id, hit.model_id) if v)
        score = f"  score {hit.score:g}" if hit.score is not None else ""
        lines.append(
            f"{hit.gen_id}  {hit.stage:<10} {made_by}  {hit.state or hit.status}{score}"
            f"  [{', '.join(hit.fields)}]"
        )
        lines.append(f"    {hit.snippet}")
    return "\n".join(lines)


def format_transcript(t: Any) -> str:
    """A generation's transcript for the terminal: who made it, from what, its call, then
    its texts, then what was made from it (an essay's judges with their replies)."""
    g = t.generation
    lines = [f"{t.stage} {t.gen_id}: {_made_by(g)}, {_outcome(g)}"]
    lines.append("lineage: " + " -> ".join(_lineage_steps(t)))
    if t.cohorts:
        lines.append(f"cohorts: {', '.join(t.cohorts)}")
    lines.append("call: " + _call_line(t.metadata()))
    for call in t.calls[:-1] if len(t.calls) > 1 else []:
        lines.append(f"  earlier call {call['recorded_at']}: {call['error'] or 'ok'}")
    texts = t.texts
    for kind, title in (
        ("prompt", "prompt"),
        ("raw", "raw reply"),
        ("reasoning", "reasoning"),
        ("parsed", "parsed"),
    ):
        text = texts.get(kind)
        if text is None:
            continue
        if kind == "raw" and text == texts.get("parsed"):
            lines += ["", "== raw reply: the same as the parsed text below =="]
            continue
        lines += ["", f"== {title} ({len(text):,} characters) ==", text.rstrip("\n")]
    if t.judges:
        lines += ["", f"== judges ({len(t.judges)}) =="]
        lines += [f"  {_judge_line(j)}" for j in t.judges]
        for j in t.judges:
            if j["reply"] is not None:
                lines += ["", f"-- {_judge_line(j)} --", j["reply"].rstrip("\n")]
    elif t.children:
        lines += ["", f"== made from it ({len(t.children)}) =="]
        lines += [f"  {c['gen_id']}  {c['stage']:<10} {_made_by(c)}, {_outcome(c)}" for c in t.children]
    return "\n".join(lines)


def _made_by(g: dict[str, Any]) -> str:
    model = g["model_id"] or "copy (no model)"
    return f"{g['template_id']} / {model}, replicate {g['replicate']}"


def _outcome(g: dict[str, Any]) -> str:
    text = g["status"] if g["state"] in (None, "ok") else f"{g['status']} ({g['state']})"
    if g.get("score") is not None:
        text += f", score {g['score']:g}"
    if g.get("error"):
        text += f": {g['error'].splitlines()[0]}"
    return text


def _lineage_steps(t: Any) -> list[str]:
    steps = []
    if t.concepts:
        steps.append(" + ".join(c["name"] for c in t.concepts))
    combo = t.generation["combo_id"] or next((a["combo_id"] for a in t.lineage if a["combo_id"]), None)
    if combo:
        steps.append(f"combination {combo}")
    steps += [f"{a['stage']} {a['gen_id']}" for a in t.lineage]
    steps.append(f"{t.stage} {t.gen_id} (this)")
    if t.children:
        kinds = sorted({c["stage"] for c in t.children})
        steps.append(f"{len(t.children)} {'/'.join(kinds)}(s)")
    return steps


def _call_line(m: dict[str, Any]) -> str:
    if m["provider"] is None:
        return f"no reply recorded (attempts {m['attempts']}, status {m['status']})"
    parts = [f"model {m['model_id'] or '-'} ({m['provider']}: {m['resolved_model'] or '-'})"]
    if m["prompt_tokens"] is not None or m["completion_tokens"] is not None:
        parts.append(f"{m['prompt_tokens'] or 0:,} prompt + {m['completion_tokens'] or 0:,} completion tokens")
    if m["latency_s"] is not None:
        parts.append(f"{m['latency_s']:.2f} s")
    if m["cost"]:
        parts.append(f"${m['cost']:.4f}")
    parts.append(f"finish {m['finish_reason'] or '-'}")
    parts.append(f"attempts {m['attempts']}")
    if m["offline"]:
        parts.append("offline dry-run")
    return ", ".join(parts)


def _judge_line(j: dict[str, Any]) -> str:
    scale = (
        f" on {j['scale_min']:g}-{j['scale_max']:g}"
        if j["scale_min"] is not None and j["scale_max"] is not None
        else ""
    )
    score = f"{j['score']:g}{scale}" if j["score"] is not None else (j["state"] or j["status"])
    error = f": {j['error'].splitlines()[0]}" if j["error"] else ""
    return f"{j['template_id']} / {j['model_id']} #{j['replicate']}: {score}{error}  ({j['gen_id']})"
