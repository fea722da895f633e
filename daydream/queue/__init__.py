"""The queue: generations are tasks, leased by workers through the database.

- ``tasks``: a claimed task with what it needs to run, its outcome, what is left;
- ``leases``: claim, record, heartbeat and release, each one short transaction with
  fencing tokens;
- ``pools``: concurrency limits across processes and their adaptation to rate limits;
- ``cohorts``: a cohort's work as a whole: its status, retrying and cancelling it.
"""
