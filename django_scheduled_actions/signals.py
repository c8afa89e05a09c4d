"""The app's own signals. Every one is sent with ``sender=ScheduledFunction`` (or ``CronJob``, ``WorkflowRun``).

- ``job_scheduled(job)``: a job row was committed (sent on commit of the scheduling transaction).
- ``job_started(job, worker_id)``: a worker is about to run the job's body.
- ``job_succeeded(job, result, worker_id)``: the job finished; ``result`` is its stored value.
- ``job_failed(job, error, will_retry, worker_id)``: an attempt failed; ``will_retry`` says whether
  another attempt is scheduled; ``error`` is the exception (or a ``WorkerLost`` / ``JobTimeout``).
- ``job_canceled(job_ids)``: jobs were canceled.
- ``workflow_started(run_id, workflow, state, result, error)`` (``sender=WorkflowRun``): a run was started
  (sent on commit of the starting transaction; ``state`` is ``"pending"``, ``result`` None, ``error`` "").
- ``workflow_finished(run_id, workflow, state, result, error)`` (``sender=WorkflowRun``): a run ended
  ``success`` (its ``result``), ``failed`` (its ``error``) or ``canceled`` (sent on commit).
- ``cron_skipped(cron, tick, reason, count)``: ``count`` ticks of the ``CronJob`` ``cron`` did not fire,
  the first at ``tick``; ``reason`` is ``"overlap"`` (the previous run was still pending or running),
  ``"missed"`` (workers were down; a later tick fired) or ``"invalid"`` (function gone, bad arguments).

Receivers that raise are logged and never disturb the worker (signals are sent with ``send_robust``).
"""

from django.dispatch import Signal

job_scheduled = Signal()
job_started = Signal()
job_succeeded = Signal()
job_failed = Signal()
job_canceled = Signal()
cron_skipped = Signal()
workflow_started = Signal()
workflow_finished = Signal()

LOGGING_UID = "scheduled_actions_log_"  # the dispatch_uid prefix of the app's own logging (signal_handlers.py)


def only_logged(signal: Signal) -> bool:
    """Whether the app's own logging is all that receives ``signal``: sending it then needs no database
    connection (an async action's ``job_started`` is sent on the event loop instead of on a connection)."""
    return all(isinstance(uid := entry[0][0], str) and uid.startswith(LOGGING_UID) for entry in signal.receivers)
