"""The app's own logging, as receivers of its signals (connected in ``AppConfig.ready``).

Messages are ``key=value`` so log search can filter on them; a failure is logged at ERROR with its
exception and traceback (what error trackers such as Sentry pick up), a failure that will be retried
at WARNING. Replace or silence them with the ``django_scheduled_actions`` logger's configuration.
"""

from __future__ import annotations

import logging
from typing import Any

from . import signals

logger = logging.getLogger("django_scheduled_actions")


def log_started(sender: Any, job: Any, worker_id: str | None = None, **kwargs: Any) -> None:
    logger.debug("job started job=%s name=%s attempt=%s worker=%s", job.pk, job.name, job.attempts, worker_id)


def log_succeeded(sender: Any, job: Any, worker_id: str | None = None, **kwargs: Any) -> None:
    logger.info("job succeeded job=%s name=%s worker=%s", job.pk, job.name, worker_id)


def log_failed(
    sender: Any, job: Any, error: BaseException, will_retry: bool, worker_id: str | None = None, **kwargs: Any
) -> None:
    if will_retry:
        logger.warning(
            "job failed, will retry job=%s name=%s attempt=%s error=%r", job.pk, job.name, job.attempts, error
        )
        return
    logger.error(
        "job failed job=%s name=%s attempt=%s worker=%s error=%r",
        job.pk,
        job.name,
        job.attempts,
        worker_id,
        error,
        exc_info=(type(error), error, error.__traceback__),
    )


def log_canceled(sender: Any, job_ids: list[int], **kwargs: Any) -> None:
    logger.info("jobs canceled jobs=%s", ",".join(map(str, job_ids)))


def log_workflow_finished(sender: Any, run_id: int, workflow: str, state: str, error: str = "", **kwargs: Any) -> None:
    if state == "failed":
        logger.warning("workflow failed run=%s workflow=%s error=%r", run_id, workflow, error.rsplit("\n", 1)[-1])
        return
    logger.info("workflow finished run=%s workflow=%s state=%s", run_id, workflow, state)


def connect() -> None:
    for signal, receiver in (
        (signals.job_started, log_started),
        (signals.job_succeeded, log_succeeded),
        (signals.job_failed, log_failed),
        (signals.job_canceled, log_canceled),
        (signals.workflow_finished, log_workflow_finished),
    ):
        signal.connect(receiver, dispatch_uid=f"{signals.LOGGING_UID}{receiver.__name__}")
