"""The worker: claim ready tasks by lease, run one stage each, record the result.

- ``config``: ``WorkerConfig``, the settings that travel whole to a worker process;
- ``execute``: one claimed task -> its outcome (render, call or copy, validate, parse);
- ``loop``: ``Worker``, ``while not stopping: run_once()`` with heartbeats and shutdown;
- ``slots``: the pool slots a worker holds and its calls in flight, in memory;
- ``stats``: what a worker did; ``process``: running one worker to the end.

Invariants:

- A result is recorded only if the task still carries its attempt's fencing token (a
  worker whose lease expired, and whose task was claimed by someone else, writes nothing).
- Pool limits hold across processes and adapt to rate limiting (``queue.pools``). A worker
  runs at most as many calls in a pool as its leases there hold slots (``Slots``); its
  queued leases start in the slots of its finished calls, and the next exchange records
  the result and moves the slot to the new task in one transaction (``slots.taken``), so
  the pool's count in the database never falls below the calls really in flight.
- Rate-limited calls (429) are requeued with ``not_before`` (honouring Retry-After) and do
  not count as attempts; other retryable failures are attempts with exponential backoff;
  after ``max_attempts`` the generation fails with its last error and blocks its children.
  An expired lease (the worker died or stalled) counts as an attempt: a task whose worker
  dies every time fails after ``max_attempts`` instead of crash-looping.
- SIGTERM/SIGINT: stop claiming, give in-flight calls ``grace`` seconds, then release the
  rest (``lease.released``), so nothing waits for a lease to expire after a clean stop. A
  released lease is not counted as an attempt. A second signal skips the grace period.
- All database work happens on one dedicated thread; the event loop only awaits it.
"""
