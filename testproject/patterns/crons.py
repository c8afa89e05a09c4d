"""The guide's cron examples. Other tests drop them (tests/app/crons.py): the sync calls the provider."""

from django_scheduled_actions import cron_jobs

from .functions import maintenance

crons = cron_jobs()
crons.interval("cleanup stale jobs", {"hours": 1}, maintenance.cleanup_stale)
crons.cron("daily report", "0 9 * * *", maintenance.generate_daily)  # 9 AM every day (UTC)
crons.interval("sync external data", {"minutes": 5}, maintenance.pull_external_data)
crons.cron("weekly cleanup", "0 0 * * 0", maintenance.weekly_cleanup, {"older_than_days": 7})  # Sundays, midnight
