"""The patterns' own data, and the fake provider's (``Provider*``), all in the project's database."""

from django.db import models
from django.utils import timezone


class Email(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        SENT = "sent"
        FAILED = "failed"

    to = models.EmailField()
    subject = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    message_id = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new"
        PAID = "paid"
        FAILED = "failed"
        FULFILLED = "fulfilled"

    total_cents = models.PositiveIntegerField()
    payment_method = models.CharField(max_length=50, default="tok_visa")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    charge_id = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)


class Message(models.Model):
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)


class Reminder(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        SENT = "sent"
        CANCELED = "canceled"

    email = models.EmailField()
    message = models.CharField(max_length=200)
    send_at = models.DateTimeField()
    job_id = models.BigIntegerField(null=True, blank=True, help_text="the scheduled function that sends it")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    sent_at = models.DateTimeField(null=True, blank=True)


class ProcessingJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        COMPLETED = "completed"
        FAILED = "failed"
        STALE = "stale"

    data = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt = models.PositiveIntegerField(default=1)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="patterns_job_status_idx")]


class Payment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        CHARGED = "charged"
        FAILED = "failed"

    idempotency_key = models.CharField(max_length=100, unique=True)
    amount_cents = models.PositiveIntegerField()
    customer_id = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    charge_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)


class Subscription(models.Model):
    customer = models.EmailField(unique=True)  # one subscription per customer: a second one fails the saga
    plan_id = models.CharField(max_length=50)
    provider_subscription_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)


class Item(models.Model):
    class Status(models.TextChoices):
        NEW = "new"
        PROCESSED = "processed"

    name = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    result = models.JSONField(null=True, blank=True)


class BatchReport(models.Model):
    """Written by a batch's on_complete: the fan-in."""

    batch_id = models.BigIntegerField()
    label = models.CharField(max_length=100, blank=True)
    succeeded = models.PositiveIntegerField()
    failed = models.PositiveIntegerField()
    canceled = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)


class DailyReport(models.Model):
    day = models.DateField(unique=True)
    summary = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)


class ExternalRecord(models.Model):
    """Pulled from the provider by the "sync external data" cron."""

    external_id = models.CharField(max_length=64, unique=True)
    value = models.JSONField(default=dict)
    synced_at = models.DateTimeField(default=timezone.now)


# --- the fake provider's side ---


class ProviderRecord(models.Model):
    """What the fake provider stores: sent emails, charges, subscriptions, processed payloads."""

    kind = models.CharField(max_length=20)
    external_id = models.CharField(max_length=64, unique=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 - NULLs never clash
    data = models.JSONField(default=dict)
    status = models.CharField(max_length=20, default="ok")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "idempotency_key"], name="patterns_provider_key")]


class ProviderFailure(models.Model):
    """Make an endpoint of the fake provider fail: the next ``fail_next`` calls, then a share of them."""

    class Endpoint(models.TextChoices):
        EMAIL = "email"
        CHARGES = "charges"
        SUBSCRIPTIONS = "subscriptions"
        PROCESS = "process"
        DATA = "data"

    endpoint = models.CharField(max_length=20, choices=Endpoint.choices, unique=True)
    fail_next = models.PositiveIntegerField(default=0)
    failure_rate = models.FloatField(default=0.0, help_text="0.0 - 1.0")

    def __str__(self) -> str:
        return f"{self.endpoint}: next {self.fail_next}, rate {self.failure_rate}"
