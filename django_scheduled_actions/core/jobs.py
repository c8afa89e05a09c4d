"""What a function body knows of the job it runs as."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class JobInfo:
    """The job a function runs as: ``ctx.job`` (``None`` when not run as a job)."""

    id: int
    name: str
    attempt: int
    scheduled_time: datetime
    kind: str | None = None  # "mutation" | "action"; a mutation job completes in its body's transaction
