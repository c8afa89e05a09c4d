from django.db import models


class Message(models.Model):
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new"
        PAID = "paid"
        FAILED = "failed"
        FULFILLED = "fulfilled"

    total_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    charge_id = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
