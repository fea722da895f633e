"""The offline provider: deterministic synthetic replies for dry runs, tests and benchmarks.

A reply is a pure function of (model, seed, prompt) and takes tens of microseconds, so a
dry run measures the orchestration, not the provider. Its shape follows what the prompt
asks for (a judge's ``SCORE`` line, ``<essay>`` or ``<essay-idea>`` blocks, notes), so
every parser has something to parse, and its first line says ``[offline dry-run]`` so
synthetic text is never mistaken for a model's.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

from daydream.providers.protocol import Completion, CompletionRequest

OFFLINE_LABEL = "[offline dry-run]"


class OfflineProvider:
    """Deterministic synthetic replies, for dry runs, tests and benchmarks. Never a network."""

    name = "offline"
    is_offline = True
    endpoints: tuple[str, ...] = ()  # no endpoint: never down, never probed

    def __init__(self, latency_s: float = 0.0, *, in_scale: bool = False) -> None:
        self.latency_s = latency_s
        self.in_scale = in_scale  # judge within the request's scale (rehearsals)

    def __repr__(self) -> str:
        return f"OfflineProvider(latency_s={self.latency_s!r}, in_scale={self.in_scale!r})"

    async def complete(self, request: CompletionRequest) -> Completion:
        """Reply with ``render_offline_reply`` after ``latency_s`` seconds."""
        started = time.perf_counter()
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        text = render_offline_reply(
            request.prompt,
            model=request.model,
            seed=request.seed,
            scale=request.scale if self.in_scale else None,
        )
        return Completion(
            text=text,
            finish_reason="stop",
            prompt_tokens=len(request.prompt) // 4,
            completion_tokens=len(text) // 4,
            resolved_model=f"offline/{request.model}",
            latency_s=time.perf_counter() - started,
            cost=0.0,
            request_id="offline-" + _digest(request.prompt, request.model, request.seed).hex()[:20],
            offline=True,
        )

    async def aclose(self) -> None:
        """Nothing to release."""


def render_offline_reply(
    prompt: str,
    *,
    model: str = "offline",
    seed: int | None = None,
    label: str = OFFLINE_LABEL,
    origin: str | None = None,
    scale: tuple[float, float] | None = None,
) -> str:
    """A well-formed synthetic reply to ``prompt``, a pure function of its arguments.

    The shape follows what the prompt asks for, so every parser has something to parse:

    - ``SCORE`` in the prompt (an evaluation rubric): a few reasoning lines, then a final
      line ``SCORE: N`` with N in 0-9, or within ``scale`` when given (whole numbers on a
      whole-number scale);
    - ``<essay-idea`` (a rolling-thread draft): several ``<essay-idea stage="k">`` blocks,
      tags on their own lines;
    - ``<essay>`` (or ``<ESSAY>``, ``<Essay>``): one ``<essay>...</essay>`` block;
    - otherwise: markdown notes of at least five non-empty lines.

    The text uses words taken from the prompt, lower-cased so it can never contain the
    ``SCORE`` trigger itself. The first line starts with ``label`` and names ``origin``
    (default ``offline/<model>``).
    """
    digest = _digest(prompt, model, seed)
    words = _topic_words(prompt, digest)
    origin = origin or f"offline/{model}"
    if "SCORE" in prompt:
        return _judge_reply(label, origin, words, digest, scale)
    # Not prompt.lower(): lower-casing a long non-ASCII prompt costs more than the reply.
    if "<essay-idea" in prompt or "<ESSAY-IDEA" in prompt:
        return _essay_ideas_reply(label, origin, words, digest)
    if "<essay>" in prompt or "<ESSAY>" in prompt or "<Essay>" in prompt:
        return _essay_reply(label, origin, words, digest)
    return _notes_reply(label, origin, words, digest)


_WORD_RE = re.compile(r"[a-z][a-z-]{3,}")  # applied to the lowercased prompt
_WORD_SCAN_CHARS = 300
_FALLBACK_WORDS = ("idea", "mechanism", "loop", "signal", "network", "feedback")
_STOPWORDS = frozenset(
    """
    about above after again also among another any because been before being below between
    both cannot could does doing down during each essay essays evaluate evaluation every
    final following from further have having here into itself just like line lines make more
    most must only other output over same score scores should some such than that their them
    then there these they this those through under until very were what when where which
    while with within without would your yours step steps text essay-idea thinking
    """.split()
)
_OPENERS = (
    "What if {a} were treated as a kind of {b}?",
    "Start from {a} and let {b} reshape it.",
    "A loop: {a} feeds {b}, and {b} sharpens {a}.",
    "Suppose {a} and {b} are two views of one process.",
)
_MOVES = (
    "- {a}: name the mechanism, not the metaphor.",
    "- Link {a} to {b} through a concrete signal.",
    "- Ask who pays for {a} and who benefits from {b}.",
    "- Find the smallest experiment that tests {a}.",
    "- Write down what would make {b} fail.",
    "- Keep {a} and {b} separate until the link is explicit.",
)
_VERDICTS = (
    "The essay connects {a} and {b}, but the mechanism stays vague.",
    "The argument from {a} to {b} is coherent and specific.",
    "The link between {a} and {b} is asserted rather than shown.",
    "The treatment of {a} is original; {b} is handled conventionally.",
)


def _digest(prompt: str, model: str, seed: int | None) -> bytes:
    seed_text = "" if seed is None else str(seed)
    key = f"{model}\x00{seed_text}\x00".encode()
    # SHA-256 for speed (hardware-accelerated), not security; 16 bytes are plenty.
    return hashlib.sha256(key + prompt.encode("utf-8", "surrogatepass")).digest()[:16]


def _topic_words(prompt: str, digest: bytes) -> list[str]:
    # The head holds a draft's concepts, the tail an evaluation's essay; scanning only these
    # windows keeps a reply to a long prompt within a few tens of microseconds.
    if len(prompt) > 2 * _WORD_SCAN_CHARS:
        prompt = prompt[:_WORD_SCAN_CHARS] + " " + prompt[-_WORD_SCAN_CHARS:]
    found = dict.fromkeys(_WORD_RE.findall(prompt.lower()))
    words = [word for word in found if word not in _STOPWORDS] or list(_FALLBACK_WORDS)
    while len(words) < 6:
        words.append(_FALLBACK_WORDS[len(words) % len(_FALLBACK_WORDS)])
    start = digest[0] % len(words)
    return [words[(start + i * 7) % len(words)] for i in range(6)]


def _judge_reply(
    label: str, origin: str, words: list[str], digest: bytes, scale: tuple[float, float] | None
) -> str:
    a, b, c, d = words[:4]
    return "\n".join(
        (
            f"{label} judge reply from {origin}; not a real assessment.",
            _VERDICTS[digest[2] % len(_VERDICTS)].format(a=a, b=b),
            f"- Strength: it gives {c} a concrete role.",
            f"- Weakness: {d} is mentioned but never tested.",
            "Overall: a placeholder verdict derived from the prompt's hash.",
            f"SCORE: {_score(digest[1], scale)}",
        )
    )


def _score(byte: int, scale: tuple[float, float] | None) -> str:
    """0-9, or a point of ``scale`` (the whole numbers of a whole-number scale; tenths of
    its span otherwise)."""
    if scale is None:
        return str(byte % 10)
    low, high = scale
    if float(low).is_integer() and float(high).is_integer():
        return f"{low + byte % (int(high - low) + 1):g}"
    return f"{low + (high - low) * (byte % 11) / 10:g}"


def _essay_ideas_reply(label: str, origin: str, words: list[str], digest: bytes) -> str:
    stages = 2 + digest[2] % 3
    lines = [f"{label} rolling idea thread from {origin}."]
    for stage in range(1, stages + 1):
        a, b = words[stage % 6], words[(stage + 1) % 6]
        lines += [
            f'<essay-idea stage="{stage}">',
            f"{label} Stage {stage}: "
            + _OPENERS[(digest[3] + stage) % len(_OPENERS)].format(a=a, b=b),
            f"The thread so far ties together {', '.join(words[: stage + 1])}.",
            "</essay-idea>",
        ]
    lines.append(f"Wrap-up: the most helpful attachment was {words[1]}.")
    return "\n".join(lines)


def _essay_reply(label: str, origin: str, words: list[str], digest: bytes) -> str:
    a, b, c, d = words[:4]
    return "\n".join(
        (
            f"{label} essay from {origin}.",
            "<essay>",
            f"# {label} On {a} and {b}",
            "",
            _OPENERS[digest[3] % len(_OPENERS)].format(a=a, b=b)
            + f" This essay follows that question through {c}.",
            "",
            f"The mechanism is simple to state: {c} produces candidates, {d} filters them, "
            f"and what survives changes how {a} is understood.",
            "",
            f"The open question is whether {b} can be measured before it is trusted.",
            "</essay>",
        )
    )


def _notes_reply(label: str, origin: str, words: list[str], digest: bytes) -> str:
    a, b, c, d, e, f = words
    moves = [_MOVES[(digest[4] + i) % len(_MOVES)] for i in range(3)]
    return "\n".join(
        (
            f"{label} brainstorm notes from {origin}.",
            f"# {a} x {b}",
            _OPENERS[digest[3] % len(_OPENERS)].format(a=a, b=b),
            moves[0].format(a=c, b=d),
            moves[1].format(a=d, b=e),
            moves[2].format(a=e, b=f),
            f"## Next: combine {a}, {c} and {f} into one testable claim.",
        )
    )
