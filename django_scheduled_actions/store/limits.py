"""Concurrency limits: ``max_concurrency=N`` on a function, ``SCHEDULED_ACTIONS_QUEUE_CONCURRENCY`` per queue.

A limit counts the jobs in ``in_progress`` (claimed, running, or claimed and waiting for a thread) across
all workers. Counting at claim time is only safe when claims of limited jobs do not race, so they are
serialised: the claim transaction first locks one ``ConcurrencyLimit`` row per limit (``SELECT ... FOR
UPDATE``, in key order; SQLite's single writer lock does the same), then counts the running jobs and
claims at most ``limit - running`` of each. Jobs without a limit never touch these rows: they are
claimed by the usual query, which leaves limited functions and queues out.

A job leaves ``in_progress`` when it finishes, is retried later, is canceled, or its worker's lease is
recovered: each frees its slot. (A canceled action, or one abandoned after its timeout, stops counting
while its body may still be finishing.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connections
from django.db.models import Count, Q

from ..conf import app_settings
from ..core.rates import Rate
from ..core.registry import registry
from ..core.workflows import RETRY_MARK, STEP_PREFIX, step_function
from ..models import ConcurrencyLimit, ScheduledFunction, ScheduledFunctionQuerySet, State
from . import dbclock
from . import rates as rate_buckets
from .engines import engine
from .transactions import outermost, retry_on_conflict


@dataclass(frozen=True)
class Limits:
    """The limits that apply to one claim: function name -> N, queue -> N, function name -> its rate (a
    bucket per function, ``rates.py``); and ``skip``, the names of functions the claiming worker cannot run,
    which it leaves for workers that can (``deploys.py``)."""

    functions: dict[str, int]
    queues: dict[str, int]
    skip: frozenset[str] = frozenset()
    rates: dict[str, Rate] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.functions or self.queues or self.rates)

    def lock_keys(self) -> list[str]:
        """The concurrency limits' keys, whose ``ConcurrencyLimit`` rows a claim locks."""
        return sorted([f"function:{n}" for n in self.functions] + [f"queue:{q}" for q in self.queues])

    def keys(self) -> list[str]:
        return self.lock_keys() + [f"rate:{n}" for n in sorted(self.rates)]

    def keys_of(self, name: str, queue: str) -> list[str]:
        """The limits a job named ``name`` in ``queue`` falls under (a workflow step's, its function's)."""
        function = step_function(name)
        keys = [f"function:{function}"] if function in self.functions else []
        keys += [f"rate:{function}"] if function in self.rates else []
        return keys + ([f"queue:{queue}"] if queue in self.queues else [])

    def capacity(self, key: str) -> int:
        kind, _, name = key.partition(":")
        return (self.functions if kind == "function" else self.queues)[name]

    def matching(self, key: str) -> Q:
        kind, _, name = key.partition(":")
        return Q(queue=name) if kind == "queue" else _jobs_of(name)

    def names(self) -> list[str]:
        """The functions under a limit of their own: a concurrency limit, a rate or both."""
        return [*self.functions, *sorted(set(self.rates) - set(self.functions))]

    def limited(self) -> Q:
        limited = Q(queue__in=list(self.queues))
        for name in self.names():
            limited |= _jobs_of(name)
        return limited

    def unclaimed_names(self) -> list[str]:
        """The job names the usual claim query leaves out: limited functions' (and their workflow steps'
        without a retry policy of their own) and skipped ones."""
        names = self.names()
        steps = [STEP_PREFIX + name for name in names]
        return [*names, *steps, *sorted(self.skip - set(names) - set(steps))]

    def unclaimed_prefixes(self) -> list[str]:
        """The starts of the other job names it leaves out: limited functions' steps with a retry policy."""
        return [STEP_PREFIX + name + RETRY_MARK for name in self.names()]

    def without_skipped(self, jobs: ScheduledFunctionQuerySet) -> ScheduledFunctionQuerySet:
        return jobs.exclude(name__in=sorted(self.skip)) if self.skip else jobs

    def exclude_limited(self, jobs: ScheduledFunctionQuerySet) -> ScheduledFunctionQuerySet:
        """``jobs`` without the limited (and skipped) ones: what the usual claim query may take."""
        if self.functions or self.rates or self.skip:
            jobs = jobs.exclude(name__in=self.unclaimed_names())
        for prefix in self.unclaimed_prefixes():
            jobs = jobs.exclude(name__startswith=prefix)
        if self.queues:
            jobs = jobs.exclude(queue__in=list(self.queues))
        return jobs


def _jobs_of(name: str) -> Q:
    """The jobs of function ``name``: its own and its workflow steps' (with or without a retry policy)."""
    return Q(name__in=[name, STEP_PREFIX + name]) | Q(name__startswith=STEP_PREFIX + name + RETRY_MARK)


def active(queues: Iterable[str] | None = None, skip: frozenset[str] = frozenset()) -> Limits:
    """The limits a worker serving ``queues`` (None: all) must respect now, skipping the functions ``skip``."""
    functions = {fn.name: fn.options.max_concurrency for fn in registry.all() if fn.options.max_concurrency}
    rates = {fn.name: fn.rate for fn in registry.all() if fn.rate is not None}
    queue_limits = dict(app_settings.QUEUE_CONCURRENCY)
    if queues:
        queue_limits = {q: n for q, n in queue_limits.items() if q in set(queues)}
    return Limits(functions, queue_limits, skip, rates)


def claim_limited(
    limits: Limits,
    worker_id: str,
    token: str,
    limit: int,
    now: datetime | None,
    lease: timedelta,
    queues: Iterable[str] | None,
    using: str,
) -> list[ScheduledFunction]:
    """Claim up to ``limit`` due limited jobs without exceeding any limit; one short transaction, opened only
    when it may find work (``_may_claim``). Due by ``now`` (None: the database's clock), leased from the
    database's time."""
    if not _may_claim(limits, now, queues, using):
        return []

    def once() -> list[ScheduledFunction]:
        with outermost(using, None):
            _lock(limits.lock_keys(), using)
            free = _free_slots(limits, using)
            buckets = rate_buckets.open_buckets(limits.rates, free, now, using)
            chosen = _choose(limits, free, limit, now, queues, using)
            if chosen:
                ScheduledFunction.objects.using(using).filter(pk__in=[j.pk for j in chosen]).update(
                    state=State.IN_PROGRESS, worker_id=worker_id, token=token, lease_expires_at=dbclock.after(lease)
                )
            rate_buckets.spend(buckets, [step_function(job.name) for job in chosen], using)
            return chosen

    return retry_on_conflict(once)


def _may_claim(limits: Limits, now: datetime | None, queues: Iterable[str] | None, using: str) -> bool:
    """Whether the limited claim may find a job to start, read without a lock or a transaction: a queue limit,
    or a limited function with a due job that has no rate, or whose bucket holds a token. Jobs waiting for
    their rate then cost the others' claims a probe per function, not a transaction (on SQLite, the write
    lock) each."""
    if limits.queues:
        return True
    pending = ScheduledFunction.objects.using(using).filter(state=State.PENDING).in_queues(queues)
    pending = pending.filter(scheduled_time__lte=dbclock.due_by(now))
    waiting = [name for name in limits.names() if name not in limits.skip and pending.filter(_jobs_of(name)).exists()]
    if any(name not in limits.rates for name in waiting):
        return True
    return rate_buckets.any_token({name: limits.rates[name] for name in waiting}, now, using)


def _lock(keys: list[str], using: str) -> None:
    """Lock the limits' rows in key order (creating missing ones): one limited claim at a time."""
    rows = ConcurrencyLimit.objects.using(using)
    found = set(rows.select_for_update().filter(key__in=keys).order_by("key").values_list("key", flat=True))
    if len(found) < len(keys):
        rows.bulk_create([ConcurrencyLimit(key=k) for k in keys if k not in found], ignore_conflicts=True)
        list(rows.select_for_update().filter(key__in=keys).order_by("key").values_list("key", flat=True))


def _free_slots(limits: Limits, using: str) -> dict[str, int]:
    """The free slots of each concurrency limit: its N less its jobs in progress."""
    free = {key: limits.capacity(key) for key in limits.lock_keys()}
    if not free:
        return free
    running = (
        ScheduledFunction.objects.using(using)
        .filter(state=State.IN_PROGRESS)
        .filter(limits.limited())
        .values("name", "queue")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in running:
        for key in limits.keys_of(row["name"], row["queue"]):
            if key in free:
                free[key] -= row["n"]
    return free


def _choose(
    limits: Limits, free: dict[str, int], limit: int, now: datetime | None, queues: Iterable[str] | None, using: str
) -> list[ScheduledFunction]:
    """The due limited jobs to claim, highest priority first, each fitting every limit it falls under.

    Each round looks at up to ``free`` due jobs per limit with room; a job under two limits may fill one
    of them, so another round looks again until nothing more fits. A limit whose look found fewer jobs than
    it asked for has shown them all: later rounds skip it (its jobs left wait for a limit that only fills)."""
    due = ScheduledFunction.objects.using(using).due(dbclock.due_by(now)).in_queues(queues)
    due = limits.without_skipped(due.claim_order().defer("result", "error"))
    if connections[using].features.has_select_for_update_skip_locked:
        due = due.select_for_update(skip_locked=True)
    chosen: list[ScheduledFunction] = []
    seen_all = _without_due_jobs(limits, free, now, queues, using)
    while len(chosen) < limit:
        fitting = _fitting(limits, free, due.exclude(pk__in=[j.pk for j in chosen]), limit - len(chosen), seen_all)
        if not fitting:
            break
        chosen += fitting
    return chosen


def _without_due_jobs(
    limits: Limits, free: dict[str, int], now: datetime | None, queues: Iterable[str] | None, using: str
) -> set[str]:
    """The function limits with room whose function has no due job: one probe of the (name, state) index
    each, where the rounds' look down the due index would read every pending job of the others (a
    rate-limited function with nothing to do costs each claim next to nothing)."""
    pending = ScheduledFunction.objects.using(using).filter(state=State.PENDING).in_queues(queues)
    pending = pending.filter(scheduled_time__lte=dbclock.due_by(now))
    names = {key.partition(":")[2] for key in limits.keys() if free[key] > 0 and not key.startswith("queue:")}
    idle = {name for name in sorted(names) if not pending.filter(_jobs_of(name)).exists()}
    return {key for key in limits.keys() if not key.startswith("queue:") and key.partition(":")[2] in idle}


def _fitting(
    limits: Limits, free: dict[str, int], due: ScheduledFunctionQuerySet, limit: int, seen_all: set[str]
) -> list[ScheduledFunction]:
    at_limit = Limits(
        {n: 0 for n in limits.functions if free[f"function:{n}"] <= 0},
        {q: 0 for q in limits.queues if free[f"queue:{q}"] <= 0},
        rates={n: r for n, r in limits.rates.items() if free[f"rate:{n}"] <= 0},
    )
    due = at_limit.exclude_limited(due)  # a job under two limits waits while either is full
    candidates: dict[int, ScheduledFunction] = {}
    for key in limits.keys():
        if free[key] > 0 and key not in seen_all:
            wanted = min(free[key], limit)
            found = list(due.filter(limits.matching(key))[:wanted])
            candidates.update((job.pk, job) for job in found)
            if len(found) < wanted:
                seen_all.add(key)
    fitting: list[ScheduledFunction] = []
    for job in sorted(candidates.values(), key=lambda j: (-j.priority, j.scheduled_time, j.pk)):
        keys = limits.keys_of(job.name, job.queue)
        if len(fitting) < limit and all(free[key] > 0 for key in keys):
            fitting.append(job)
            for key in keys:
                free[key] -= 1
    return fitting


def next_due_time(
    queues: Iterable[str] | None, now: datetime, using: str, skip: frozenset[str] = frozenset()
) -> datetime | None:
    """When a worker should look for work again: the next due unlimited job, the next limited job not
    due yet, or the next token of a rate-limited function whose jobs are due. Limited jobs already due are
    otherwise waiting for a slot: a finishing job frees it, and the worker polls meanwhile, instead of
    spinning on a claim that returns nothing."""
    jobs = ScheduledFunction.objects.using(using)
    limits = active(queues, skip)
    if not limits and not skip:
        return engine(using).next_due_time(queues)
    pending = limits.without_skipped(jobs.filter(state=State.PENDING).in_queues(queues).order_by("scheduled_time"))
    times = [
        limits.exclude_limited(pending).values_list("scheduled_time", flat=True).first(),
        pending.filter(limits.limited(), scheduled_time__gt=now).values_list("scheduled_time", flat=True).first(),
    ]
    waiting = [n for n in sorted(limits.rates) if pending.filter(_jobs_of(n), scheduled_time__lte=now).exists()]
    times.append(rate_buckets.next_token({n: limits.rates[n] for n in waiting}, now, using))
    return min((t for t in times if t is not None), default=None)
