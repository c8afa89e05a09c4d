"""``schedule_on_save`` / ``schedule_on_delete``: model changes that enqueue work in their own transaction.

The job row is written on the same database and in the same transaction as the save or delete: a
rolled-back save enqueues nothing; a committed save always has its job. This beats
``transaction.on_commit(lambda: enqueue(...))``, which enqueues *after* the commit: a crash, a
lost connection or a broken broker between the commit and the enqueue loses the job for good.

Saves are made atomic for the registered model (``save_base`` runs inside ``transaction.atomic(
savepoint=False)``: it joins an open transaction and costs nothing more there), because Django sends
``post_save`` after an autocommit save has already committed. Deletes already run in a transaction
with ``post_delete`` inside it. ``bulk_create``, ``QuerySet.update`` and raw SQL send no signals and
enqueue nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import models, router, transaction
from django.db.models.signals import post_delete, post_save

from ..core import values
from ..core.registry import Function
from .jobs import check_schedulable
from .scheduler import Scheduler

ArgsFn = Callable[[Any], dict[str, Any]]


def _check(model: Any, fn: Any, args: Any, when: Any, delay: Any) -> None:
    if not (isinstance(model, type) and issubclass(model, models.Model)):
        raise TypeError(f"expected a model class, got {model!r}")
    check_schedulable(fn)
    if not callable(args):
        raise TypeError("args= must be a callable taking the instance and returning the arguments dict")
    if when is not None and not callable(when):
        raise TypeError("when= must be a callable or None")
    values.delay_seconds(delay, "delay=")


def _make_saves_atomic(model: type[models.Model]) -> None:
    original: Callable[..., Any] = model.save_base
    if getattr(original, "_scheduled_actions_atomic", False):
        return

    def save_base(self: models.Model, *args: Any, using: str | None = None, **kwargs: Any) -> Any:
        using = using or router.db_for_write(self.__class__, instance=self)
        with transaction.atomic(using=using, savepoint=False):
            return original(self, *args, using=using, **kwargs)

    save_base._scheduled_actions_atomic = True  # type: ignore[attr-defined]
    model.save_base = save_base  # type: ignore[method-assign]


def schedule_on_save(
    model: type[models.Model],
    fn: Function,
    *,
    args: ArgsFn,
    when: Callable[[Any, bool], bool] | None = None,
    delay: float | timedelta = 0,
) -> None:
    """After each save of ``model`` for which ``when(instance, created)`` is true, schedule
    ``fn(args(instance))`` ``delay`` seconds later, in the save's transaction. Fixture loads (raw) skip."""
    _check(model, fn, args, when, delay)
    _make_saves_atomic(model)

    def receiver(
        sender: Any, instance: Any, created: bool, raw: bool = False, using: str = "default", **kwargs: Any
    ) -> None:
        if raw or (when is not None and not when(instance, created)):
            return
        Scheduler(using=using).run_after(delay, fn, args(instance))

    post_save.connect(receiver, sender=model, weak=False, dispatch_uid=_uid("save", model, fn))


def schedule_on_delete(
    model: type[models.Model],
    fn: Function,
    *,
    args: ArgsFn,
    when: Callable[[Any], bool] | None = None,
    delay: float | timedelta = 0,
) -> None:
    """After each delete of ``model`` for which ``when(instance)`` is true, schedule ``fn(args(instance))``
    in the delete's transaction. ``args`` sees the instance as it was (its pk is still set)."""
    _check(model, fn, args, when, delay)

    def receiver(sender: Any, instance: Any, using: str = "default", origin: Any = None, **kwargs: Any) -> None:
        if when is not None and not when(instance):
            return
        Scheduler(using=using).run_after(delay, fn, args(instance))

    post_delete.connect(receiver, sender=model, weak=False, dispatch_uid=_uid("delete", model, fn))


def _uid(what: str, model: type[models.Model], fn: Function) -> str:
    return f"scheduled_actions:{what}:{model._meta.label}:{fn.name}"
