"""Functions of the orchestration tests: batches, concurrency limits, sagas."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

from django_scheduled_actions import RetryPolicy, Saga, internal_action, internal_mutation
from django_scheduled_actions.core.registry import registry

from .models import Counter, Effect, Note

LIMITED_QUEUE = "limited-queue"  # limited to 3 running jobs by tests/limits_settings.py


def _bump(name: str) -> int:
    counter, _ = Counter.objects.get_or_create(name=name)
    counter.value += 1
    counter.save()
    return counter.value


@internal_mutation
def tally(ctx, name: str) -> int:
    return _bump(name)


@internal_mutation
def note(ctx, text: str) -> None:
    Note.objects.create(text=text)


# --- batches ---


@internal_mutation
def item_mutation(ctx, i: int, fail: bool = False) -> int:
    if fail:
        raise ValueError(f"item {i} fails")
    return i * i


@internal_action
def item_action(ctx, i: int, fail: bool = False) -> int:
    ctx.run_mutation(tally, {"name": "batch items"})
    if fail:
        raise ConnectionError(f"item {i} fails")
    return i


@internal_mutation
def batch_done(ctx, batch_id: int, succeeded: int, failed: int, canceled: int, label: str) -> None:
    """Records each run: one Effect per run (exactly once), the counts in a Note."""
    Effect.objects.create(key=f"done {label}", job_id=ctx.job.id if ctx.job else None)
    Note.objects.create(text=f"{label} batch={batch_id} succeeded={succeeded} failed={failed} canceled={canceled}")


@internal_mutation
def fan_out(ctx, n: int, label: str) -> int:
    return ctx.scheduler.batch(
        item_mutation, [{"i": i} for i in range(n)], on_complete=batch_done, on_complete_args={"label": label}
    )


@internal_mutation
def fan_out_then_fail(ctx, n: int) -> None:
    ctx.scheduler.batch(
        item_mutation, [{"i": i} for i in range(n)], on_complete=batch_done, on_complete_args={"label": "rolled back"}
    )
    raise RuntimeError("the caller fails after fanning out")


@internal_mutation
def takes_no_counts(ctx, label: str) -> None:
    """Not a valid on_complete: it does not accept batch_id, succeeded, failed, canceled."""


# --- concurrency limits: each run appends "start <t> <job>" and "end <t> <job>" to a file ---
#
# Limited functions are registered only while a test asks for them (``enable_limits``), and in worker
# processes started with SA_TEST_LIMITS=1: other tests and the benchmark keep the claim without limits.


def _log_run(path: str, seconds: float, job_id: int, tag: str) -> None:
    log = Path(path)
    with log.open("a") as f:
        f.write(f"start {time.time():.6f} {job_id} {tag}\n")
    time.sleep(seconds)
    with log.open("a") as f:
        f.write(f"end {time.time():.6f} {job_id} {tag}\n")


def limited_run(ctx, path: str, seconds: float) -> None:
    _log_run(path, seconds, ctx.job.id, "limited_run")


def queued_run(ctx, path: str, seconds: float) -> None:
    _log_run(path, seconds, ctx.job.id, "queued_run")


def limited_mutation(ctx, i: int) -> int:
    return i


def limited_in_limited_queue(ctx, i: int) -> int:
    return i


@internal_action
def unlimited_run(ctx, path: str, seconds: float) -> None:
    _log_run(path, seconds, ctx.job.id, "unlimited_run")


def enable_limits() -> SimpleNamespace:
    """Register the limited functions; returns them by name."""
    return SimpleNamespace(
        limited_run=internal_action(max_concurrency=2)(limited_run),
        queued_run=internal_action(queue=LIMITED_QUEUE)(queued_run),
        limited_mutation=internal_mutation(max_concurrency=2)(limited_mutation),
        limited_in_limited_queue=internal_mutation(max_concurrency=1, queue=LIMITED_QUEUE)(limited_in_limited_queue),
    )


def disable_limits(functions: SimpleNamespace) -> None:
    for fn in vars(functions).values():
        registry.unregister(fn.name)


if os.environ.get("SA_TEST_LIMITS") == "1":
    enable_limits()


# --- sagas: steps count their runs in Counter rows, compensations note their order ---


class Crash(BaseException):
    """Stands for the process dying: no ``except Exception`` stops it."""


@internal_action
def step_action(ctx, name: str, value: int, fail: bool = False) -> int:
    ctx.run_mutation(tally, {"name": f"run {name}"})
    if fail:
        raise ConnectionError(f"step {name} fails")
    return value


@internal_mutation
def step_mutation(ctx, name: str, value: int, fail: bool = False) -> int:
    _bump(f"run {name}")
    if fail:
        raise ValueError(f"step {name} fails")
    return value


@internal_action
def undo_action(ctx, name: str, value: int) -> None:
    ctx.run_mutation(tally, {"name": f"undo {name}"})
    ctx.run_mutation(note, {"text": f"undo {name} {value}"})


@internal_mutation
def undo_mutation(ctx, name: str, value: int) -> None:
    _bump(f"undo {name}")
    Note.objects.create(text=f"undo {name} {value}")


@internal_action
def undo_then_crash(ctx, name: str, value: int) -> None:
    ctx.run_mutation(tally, {"name": f"undo {name}"})
    raise Crash(f"the worker dies while undoing {name}")


CRASHED: set[str] = set()  # the compensations that crashed once in this process


@internal_mutation
def undo_mutation_then_crash(ctx, name: str, value: int) -> None:
    """Crashes the first time (rolling its transaction back), then undoes like ``undo_mutation``."""
    _bump(f"undo {name}")
    Note.objects.create(text=f"undo {name} {value}")
    if name not in CRASHED:
        CRASHED.add(name)
        raise Crash(f"the worker dies inside the compensating transaction of {name}")


@internal_action
def undo_fails(ctx, name: str, value: int) -> None:
    ctx.run_mutation(tally, {"name": f"undo {name}"})
    raise ConnectionError(f"cannot undo {name}")


UNDO = {
    "action": undo_action,
    "mutation": undo_mutation,
    "crash": undo_then_crash,
    "crash mutation": undo_mutation_then_crash,
    "fail": undo_fails,
}


def run_three_steps(
    ctx, key: str, fail_step: str, undo: dict[str, str], mutations: bool, crash_after: str
) -> list[int]:
    results = []
    with Saga(ctx, key=key or None) as saga:
        for value, step in enumerate(("a", "b", "c"), start=1):
            name = f"{key or ctx.job.id} {step}"
            results.append(
                saga.step(
                    step,
                    step_mutation if mutations else step_action,
                    {"name": name, "value": value, "fail": step == fail_step},
                    compensate=UNDO[undo.get(step, "action")],
                    compensate_args=lambda r, n=name: {"name": n, "value": r},
                )
            )
            if step == crash_after:
                raise Crash(f"the worker dies after step {step}")
    return results


@internal_action
def three_steps(
    ctx,
    key: str = "",
    fail_step: str = "",
    undo: dict[str, str] | None = None,
    mutations: bool = False,
    crash_after: str = "",
) -> list[int]:
    return run_three_steps(ctx, key, fail_step, undo or {}, mutations, crash_after)


@internal_action(retry=RetryPolicy(max_attempts=3, initial_backoff=0.0, jitter=False))
def three_steps_retried(ctx, fail_step: str = "") -> list[int]:
    return run_three_steps(ctx, "", fail_step, {}, False, "")


@internal_action
def undo_and_hang(ctx, name: str, value: int, marker: str) -> None:
    """Counts its run, says so through ``marker``, then hangs until its worker is killed."""
    ctx.run_mutation(tally, {"name": f"undo {name}"})
    Path(marker).touch()
    time.sleep(120)


@internal_action(retry=RetryPolicy(max_attempts=2, initial_backoff=0.0, jitter=False))
def saga_killed_while_undoing(ctx, marker: str) -> list[int]:
    """Step c fails; undoing b hangs (its worker is killed); the retry finishes the rollback without b."""
    with Saga(ctx) as saga:
        name = f"killed {ctx.job.id}"
        a = saga.step(
            "a",
            step_action,
            {"name": f"{name} a", "value": 1},
            compensate=undo_action,
            compensate_args=lambda r: {"name": f"{name} a", "value": r},
        )
        b = saga.step(
            "b",
            step_action,
            {"name": f"{name} b", "value": 2},
            compensate=undo_and_hang,
            compensate_args=lambda r: {"name": f"{name} b", "value": r, "marker": marker},
        )
        saga.step("c", step_action, {"name": f"{name} c", "value": 3, "fail": True})
    return [a, b]


@internal_action
def three_steps_crashing_once(ctx, marker: str, key: str = "") -> list[int]:
    """Its worker "dies" after step b on its first run in this process; a job with no retry left. Its saga's
    key: ``key``, else the default (the job's)."""
    crash_after = "" if marker in CRASHED else "b"
    CRASHED.add(marker)
    return run_three_steps(ctx, key, "", {}, False, crash_after)
