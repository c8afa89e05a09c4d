from django.db import models


class Counter(models.Model):
    name = models.CharField(max_length=50, unique=True)
    value = models.IntegerField(default=0)


class Batch(models.Model):
    total = models.IntegerField()
    completed = models.IntegerField(default=0)
    on_complete_runs = models.IntegerField(default=0)


class Effect(models.Model):
    """One row per committed run of a mutation body: counts effects to prove exactly once."""

    key = models.CharField(max_length=100)
    job_id = models.BigIntegerField(null=True)
    attempt = models.IntegerField(default=0)


class Note(models.Model):
    text = models.CharField(max_length=200)


class Order(models.Model):
    """Saves of this model schedule work (see tests/app/hooks.py)."""

    total = models.IntegerField()
    status = models.CharField(max_length=20, default="new")
