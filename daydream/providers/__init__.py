"""Model providers: how a rendered prompt becomes a model reply.

One code path serves every OpenAI-compatible chat-completions endpoint (OpenRouter, OpenAI,
Ollama, vLLM, llama.cpp's server, LM Studio, or any other base URL). Next to it sits the
offline provider, whose replies are synthetic and deterministic: dry runs, tests and
benchmarks use it to push a whole cohort through the pipeline without a network or a bill.

Invariants:

- One ``complete()`` call is one HTTP attempt. The worker owns retries, so each attempt is
  one event in the log. This module classifies failures (``ProviderError.retryable``,
  ``status``, ``retry_after``) and ``backoff_delay`` computes the wait between attempts.
- A call never outlives its deadline. ``timeout`` bounds the whole request (connect, send
  and a slow drip of response bytes), not each read, so a lease longer than the timeout is
  never lost mid-call. The body is capped too (``max_response_bytes``).
- The API key is read from the environment when the provider is built. It is sent only in
  the ``Authorization`` header and never appears in a message, a repr or a log line: every
  error text passes through a redactor that knows the key.
- The reply text is kept exactly as the model wrote it, except that ``\\r\\n`` becomes
  ``\\n``. It is not stripped or parsed (that is the parsers' job). Empty or missing content
  gives a ``Completion`` with ``text == ""``, and the caller classifies it as a refusal.
- Concurrency is not limited here: pools are shared by all worker processes through the
  database.
- The offline provider is a pure function of (model, seed, prompt). The first line of each
  reply says ``[offline dry-run]``, so synthetic text is never mistaken for a model's.
  ``is_offline`` / ``Completion.offline`` mean "synthetic", not "no network": a local
  Ollama model is a real model and is not offline in this sense.

The package: ``registry`` (``make_provider``: a provider's name -> the provider; the one
place that knows the offline one), ``config`` (endpoints, overrides, ``.env``), ``protocol``
(request, completion, the ``Provider`` protocol), ``openai_compatible`` (the HTTP
provider) and its ``transport``, ``retry`` (what to retry, how long to wait), ``offline``
(the dry-run provider).
"""
