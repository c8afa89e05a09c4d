"""The ``workflow_kills`` scenario: durable workflows under real faults. Runs of ``durable_steps`` (ten
steps each: mutations, actions without retries, actions with a retry policy; tests/chaos/functions.py)
run on two workers while a random worker is killed (SIGKILL, then restarted under a new id) every
1.5-4 s, and the database server is crashed and restarted once, when half the plan's steps have finished
(or half the fault's time has passed).
After the faults, every run must end ``success`` within ``FINISH_WITHIN`` seconds, and:

- no step journaled twice, and each run's journal the ten steps of its plan (plus one compensation
  after each action step that failed), every one finished;
- a mutation step took effect exactly once (compensations included);
- an action step without retries ran at most once (one job attempt, at most one effect); if it failed,
  it was lost with a killed worker or the database, and the run compensated it;
- an action step with ``retry=`` ran at most ``max_attempts`` times (attempts and effects), and failed
  only once they were spent, its last attempt lost to a fault;
- no job in progress long past its lease, no job left unfinished, no effect that no step owns, and the
  counter every mutation bumps equal to the effects.

Run inside the runner process (``tests/chaos/runner.py``) as the scenario's whole run.
"""

from __future__ import annotations

import random
import time
from collections import Counter

RUNS = {"full": 200, "short": 40}
KILL_EVERY = (1.5, 4.0)  # seconds between two kills
FINISH_WITHIN = 120.0  # seconds after the faults end by which every run has finished
LOST_ERRORS = ("worker lost: ",)
DATABASE_AWAY = (  # an action's ``ctx.run_mutation`` or its outcome lost while the server was down
    "OperationalError",
    "InterfaceError",
    "connection",
    "Connection",
    "server closed",
    "Lost connection",
    "terminating",
)


def _finished_runs() -> int:
    from django_scheduled_actions.models import WorkflowRun

    return WorkflowRun.objects.filter(state__in=("success", "failed", "canceled")).count()


def _finished_steps() -> int | None:
    from django.db import connection

    from django_scheduled_actions.models import WorkflowStep

    try:
        return WorkflowStep.objects.filter(state__in=("success", "failed")).count()
    except Exception:
        connection.close()
        return None


def _progress() -> int | None:
    from django.db import connection

    try:
        return _finished_runs()
    except Exception:  # the server is down mid-fault
        connection.close()
        return None


def _faults(run, total: int) -> None:
    """Kill a random worker every ``KILL_EVERY`` seconds until every run has finished or the fault's time
    is up; crash and restart the database once, when half the plan's steps have finished or half that time
    passed (the runs advance together: half the runs finish near the end)."""
    from . import functions as cf

    rng = random.Random(18)  # noqa: S311
    end = time.monotonic() + run.fault_seconds
    restarted = False
    while time.monotonic() < end:
        time.sleep(rng.uniform(*KILL_EVERY))
        done = _progress()
        if done is not None and done >= total:
            break
        slot = rng.choice(sorted(run.workers.procs))
        run.workers.kill(slot)
        run.kills += 1
        run.workers.start(slot)
        steps_done = _finished_steps() or 0
        halfway = steps_done >= total * len(cf.PLAN) // 2 or time.monotonic() > end - run.fault_seconds / 2
        if not restarted and halfway:
            run.restarted_at = (round(time.monotonic() - (end - run.fault_seconds)), steps_done)
            run.server.crash()
            run.kills += 1
            time.sleep(2.0)
            run.server.start()
            restarted = True
    if not restarted:  # the runs outpaced the faults: the scenario did not test what it says
        run.violation("the database restart came after every run had finished: more runs, or a shorter plan")


def run_workflow_kills(run):
    from django.db import connection, connections

    from django_scheduled_actions import workflows

    from . import functions as cf
    from .load import reset_tables, wait_for

    started = time.monotonic()
    total = RUNS["short" if run.short else "full"]
    run.restarted_at = None
    connections.close_all()
    reset_tables()
    workers = run.workers
    for slot in ("w1", "w2"):
        workers.start(slot)
    try:
        workers.wait_ready()
        run.monitor.start()
        run_ids = [workflows.start(cf.durable_steps, {"key": f"r{i}"}) for i in range(total)]
        t0 = time.monotonic()
        _faults(run, total)
        fault_end = time.monotonic()
        try:
            wait_for(lambda: _finished_runs() >= total, FINISH_WITHIN, "every run to finish", interval=0.2)
        except AssertionError as exc:
            run.violation(f"{exc}: {_unfinished()}\n{workers.tails()}")
        finished = time.monotonic()
        run.result.recovery = round(max(finished - fault_end, 0.0), 1)
        run.result.during = round(total * len(cf.PLAN) / max(finished - t0, 0.001), 1)  # steps a second
        wait_for(lambda: not _open_jobs().exists(), 30, "the last jobs to finish")
    except AssertionError as exc:
        run.violation(str(exc))
    finally:
        run.monitor.stop()
        workers.stop_all()
        connection.close()
    check_workflow_invariants(run, run_ids if "run_ids" in locals() else [])
    run.result.kills = run.kills
    run.result.seconds = round(time.monotonic() - started, 1)
    return run.result


def _open_jobs():
    from django_scheduled_actions.models import FINAL_STATES, ScheduledFunction

    return ScheduledFunction.objects.filter(cron__isnull=True).exclude(state__in=FINAL_STATES)


def _unfinished() -> str:
    from django_scheduled_actions.models import WorkflowRun, WorkflowStep

    runs = Counter(WorkflowRun.objects.values_list("state", flat=True))
    open_steps = list(
        WorkflowStep.objects.exclude(state__in=("success", "failed")).values_list(
            "run_id", "index", "kind", "state", "job_id"
        )[:10]
    )
    return f"runs by state {dict(runs)}; open steps (run, index, kind, state, job) {open_steps}"


def _away(error: str, faulted: set[str]) -> str | None:
    """Why a step's job failed, if a fault explains it: ``killed`` (its worker was killed) or ``database``."""
    for prefix in LOST_ERRORS:
        if error.startswith(prefix) and error[len(prefix) :].split(" ", 1)[0] in faulted:
            return "killed"
    if any(text in error for text in DATABASE_AWAY):
        return "database"
    return None


def check_workflow_invariants(run, run_ids: list[int]) -> None:
    from django_scheduled_actions.models import ScheduledFunction, WorkflowRun, WorkflowStep
    from tests.app.models import Counter as ChaosCounter
    from tests.app.models import Effect

    from . import functions as cf
    from .load import CRON_LABEL
    from .runner import STUCK_AFTER

    res = run.result
    lost: list[str] = []
    duplicated: list[str] = []
    effects = Counter(Effect.objects.exclude(key=CRON_LABEL).values_list("key", flat=True))
    jobs = {job.pk: job for job in ScheduledFunction.objects.filter(cron__isnull=True)}
    runs = {r.pk: r for r in WorkflowRun.objects.all()}
    by_run: dict[int, list] = {}
    for s in WorkflowStep.objects.order_by("run_id", "index"):
        by_run.setdefault(s.run_id, []).append(s)
    owned: set[str] = set()
    tally = Counter()
    for run_id in run_ids:
        wf_run = runs.get(run_id)
        if wf_run is None:
            lost.append(f"run {run_id}: started (the call returned) but no row")
            continue
        where = f"run {run_id} ({wf_run.args.get('key')})"
        if wf_run.state != "success":
            lost.append(f"{where}: ended {wf_run.state}: {wf_run.error.strip().splitlines()[-1:]}")
        journaled = by_run.get(run_id, [])
        indexes = [s.index for s in journaled]
        for index, n in Counter(indexes).items():
            if n > 1:
                duplicated.append(f"{where}: step {index} journaled {n} times")
        if indexes != list(range(len(indexes))):
            lost.append(f"{where}: journal indexes {indexes}")
        expected: list[tuple[str, str]] = []  # (kind, key) the journal must hold, in order
        steps = iter(journaled)
        for position, kind in enumerate(cf.PLAN):
            key = f"{wf_run.args.get('key')}.{position}"
            s = next(steps, None)
            if s is None:
                if wf_run.state == "success":
                    lost.append(f"{where}: the journal ends before step {position} of the plan")
                break
            owned.add(key)
            if s.args.get("key") != key or s.kind != ("mutation" if kind == "mutation" else "action"):
                lost.append(f"{where}: step {s.index} is {s.kind} {s.args}, the plan's {position} is {kind} {key}")
                break
            expected.append((kind, key))
            job = jobs.get(s.job_id)
            n = effects[key]
            at = f"{where} step {s.index} {kind} state={s.state} effects={n} attempts={job.attempts if job else None}"
            if s.state not in ("success", "failed"):
                lost.append(f"{at}: never finished (job {s.job_id} {job.state if job else 'gone'})")
                continue
            if job is None:
                lost.append(f"{at}: its job {s.job_id} is gone")
                continue
            if kind == "mutation":
                tally["mutation"] += 1
                if n != 1 or s.state != "success":
                    (duplicated if n > 1 else lost).append(f"{at}: a mutation step must take effect exactly once")
                continue
            limit = 1 if kind == "once" else cf.STEP_ATTEMPTS
            tally[kind] += 1
            if n > limit or job.attempts > limit:
                duplicated.append(f"{at}: ran more than {limit} time(s)")
            if s.state == "success":
                if n == 0:
                    lost.append(f"{at}: succeeded without its effect")
                if job.attempts > 1:
                    tally[f"{kind} retried"] += 1
                continue
            why = _away(s.error, run.workers.faulted)
            if why is None:
                lost.append(f"{at}: failed, though no fault explains it: {s.error.strip().splitlines()[-1:]}")
            if kind == "retried" and job.attempts < cf.STEP_ATTEMPTS:
                lost.append(f"{at}: failed with attempts left")
            tally[f"{kind} compensated ({why})"] += 1
            compensation = next(steps, None)
            ckey = key + cf.COMPENSATED
            owned.add(ckey)
            if compensation is None or compensation.args.get("key") != ckey or compensation.kind != "mutation":
                lost.append(f"{at}: failed, and the run did not compensate it next")
                continue
            if compensation.state != "success" or effects[ckey] != 1:
                kind_of = duplicated if effects[ckey] > 1 else lost
                kind_of.append(f"{at}: its compensation {compensation.state} took effect {effects[ckey]} times")
            tally["mutation"] += 1
        extra = next(steps, None)
        if extra is not None:
            lost.append(f"{where}: the journal holds step {extra.index} past the plan: {extra.kind} {extra.args}")
        if wf_run.state == "success":
            outcomes = wf_run.result or []
            if len(outcomes) != len(cf.PLAN):
                lost.append(f"{where}: result {outcomes}")
    stray = {key: n for key, n in effects.items() if key not in owned}
    if stray:
        duplicated.append(f"effects that no journaled step owns: {dict(list(stray.items())[:10])}")
    open_jobs = [(j.pk, j.name, j.state) for j in jobs.values() if j.state not in ("success", "failed", "canceled")]
    if open_jobs:
        lost.append(f"jobs left unfinished: {open_jobs[:10]}")
    counted = ChaosCounter.objects.get(name=cf.COUNTER).value
    if counted != sum(effects.values()):
        duplicated.append(f"the counter says {counted} mutations took effect, the effect rows {sum(effects.values())}")
    if run.monitor.worst > STUCK_AFTER:
        run.violation(f"a job stayed in progress {run.monitor.worst:.1f}s past its lease")
    steps_total = sum(len(v) for v in by_run.values())
    res.jobs = len(jobs)
    res.lost, res.duplicated = len(lost), len(duplicated)
    res.violations[:0] = [f"lost: {t}" for t in lost[:10]] + [f"duplicated: {t}" for t in duplicated[:10]]
    parts = [f"{len(run_ids)} runs, {steps_total} steps"]
    parts += [f"{name} {n}" for name, n in sorted(tally.items())]
    if run.restarted_at is not None:
        seconds, steps_done = run.restarted_at
        parts.append(f"database restarted {seconds}s into the faults, {steps_done} steps finished")
    res.note = "; ".join(parts)
