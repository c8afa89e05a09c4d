"""The patterns' data in the admin, next to the jobs; ``ProviderFailure`` makes the fake provider fail."""

from django.contrib import admin

from . import models


@admin.register(models.Email)
class EmailAdmin(admin.ModelAdmin):
    list_display = ("id", "to", "subject", "status", "message_id", "created_at")
    list_filter = ("status",)


@admin.register(models.Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "total_cents", "payment_method", "status", "charge_id", "error", "created_at")
    list_filter = ("status",)


@admin.register(models.Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "body", "created_at")


@admin.register(models.Reminder)
class ReminderAdmin(admin.ModelAdmin):
    list_display = ("id", "email", "message", "send_at", "status", "sent_at", "job_id")
    list_filter = ("status",)


@admin.register(models.ProcessingJob)
class ProcessingJobAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "attempt", "next_retry_at", "error", "created_at")
    list_filter = ("status",)


@admin.register(models.Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("id", "idempotency_key", "amount_cents", "customer_id", "status", "charge_id")
    list_filter = ("status",)


@admin.register(models.Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("id", "customer", "plan_id", "provider_subscription_id", "created_at")


@admin.register(models.Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "status", "result")
    list_filter = ("status",)


@admin.register(models.BatchReport)
class BatchReportAdmin(admin.ModelAdmin):
    list_display = ("id", "batch_id", "label", "succeeded", "failed", "canceled", "created_at")


@admin.register(models.DailyReport)
class DailyReportAdmin(admin.ModelAdmin):
    list_display = ("day", "summary", "created_at")


@admin.register(models.ExternalRecord)
class ExternalRecordAdmin(admin.ModelAdmin):
    list_display = ("external_id", "value", "synced_at")


@admin.register(models.ProviderRecord)
class ProviderRecordAdmin(admin.ModelAdmin):
    list_display = ("external_id", "kind", "status", "idempotency_key", "created_at")
    list_filter = ("kind", "status")


@admin.register(models.ProviderFailure)
class ProviderFailureAdmin(admin.ModelAdmin):
    list_display = ("endpoint", "fail_next", "failure_rate")
    list_editable = ("fail_next", "failure_rate")
