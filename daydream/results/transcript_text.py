"""Text for people reading generations: search hits, one line each with the best passage,
and a generation's transcript (its lineage, call, texts and judges) for the terminal.
"""

from __future__ import annotations

from typing import Any


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
    if t.ratings:
        lines += ["", f"== human ratings ({len(t.ratings)}) =="]
        lines += [f"  {r['evaluation_template']} / {r['rater']}: {r['score']:g}" for r in t.ratings]
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
