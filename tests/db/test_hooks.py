"""Model saves and deletes that enqueue in their own transaction (DESIGN §7)."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_scheduled_actions import ArgumentValidationError, schedule_on_save
from django_scheduled_actions.models import ScheduledFunction
from tests.app import functions as f
from tests.app.models import Note, Order

pytestmark = pytest.mark.django_db(transaction=True)
Jobs = ScheduledFunction.objects


def test_committed_save_has_its_job():
    order = Order.objects.create(total=10)
    job = Jobs.get()
    assert (job.name, job.args) == (f.process_order.name, {"order_id": order.pk})


def test_when_decides():
    order = Order.objects.create(total=10)
    order.status = "paid"
    order.save()
    assert Jobs.count() == 1  # only on create


def test_rolled_back_save_enqueues_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(total=10)
        raise RuntimeError
    assert not Jobs.exists() and not Order.objects.exists()


def test_failed_enqueue_rolls_back_the_autocommit_save():
    """Save and enqueue are one transaction even without transaction.atomic() around the save."""
    with pytest.raises(ArgumentValidationError, match="argument 'order_id'"):
        Order.objects.create(total=-1)
    assert not Order.objects.exists() and not Jobs.exists()


def test_savepoint_rollback_drops_only_its_save_and_job():
    with transaction.atomic():
        kept = Order.objects.create(total=1)
        try:
            with transaction.atomic():
                Order.objects.create(total=2)
                raise RuntimeError
        except RuntimeError:
            pass
        Note.objects.create(text="outer work")
    assert list(Order.objects.values_list("pk", flat=True)) == [kept.pk]
    assert [j.args for j in Jobs.all()] == [{"order_id": kept.pk}]


def test_nested_atomic_blocks_commit_save_and_job_together():
    with transaction.atomic(), transaction.atomic():
        order = Order.objects.create(total=1)
        assert Jobs.filter(args__order_id=order.pk).exists()
    assert Jobs.count() == 1


def test_delete_schedules_in_the_delete_transaction():
    order_id = Order.objects.create(total=1).pk
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.get(pk=order_id).delete()
        raise RuntimeError
    assert Jobs.filter(name=f.order_deleted.name).count() == 0
    Order.objects.get(pk=order_id).delete()
    job = Jobs.get(name=f.order_deleted.name)
    assert job.args == {"order_id": order_id}
    assert (job.scheduled_time - job.created_at).total_seconds() == 30


def test_registration_checks_its_arguments():
    with pytest.raises(TypeError, match="model class"):
        schedule_on_save("Order", f.process_order, args=dict)
    with pytest.raises(TypeError, match="is a query"):
        schedule_on_save(Order, f.count, args=dict)
    with pytest.raises(TypeError, match="args="):
        schedule_on_save(Order, f.process_order, args={"order_id": 1})
    with pytest.raises(ValueError, match="delay="):
        schedule_on_save(Order, f.process_order, args=dict, delay=float("nan"))
