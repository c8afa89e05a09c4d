"""Fewer index entries per job update: every index of the job table is written by each of a job's
three updates (claim, start, completion), so indexes where most rows have nothing to index become
partial, and the foreign keys that a unique constraint already covers lose their own index.

New indexes are created before the ones they replace are dropped: MySQL/MariaDB refuse to drop the
last index a foreign key can use.
"""

import django.db.models.deletion
from django.db import migrations, models

# The indexes Django gave these foreign keys (same names on PostgreSQL and SQLite). MySQL/MariaDB are
# left alone: there Django made none for cron and retry_of (InnoDB uses the unique constraints), and
# altering the fields would drop the unique index on retry_of instead.
FOREIGN_KEY_INDEXES = {"scheduled_actions_job_parent_id_e7b74c41": "parent_id",
                       "scheduled_actions_job_cron_id_1941ec53": "cron_id",
                       "scheduled_actions_job_retry_of_id_b46bda6a": "retry_of_id"}


def drop_foreign_key_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "mysql":
        for name in FOREIGN_KEY_INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def create_foreign_key_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "mysql":
        for name, column in FOREIGN_KEY_INDEXES.items():
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON scheduled_actions_job ({column})")


class Migration(migrations.Migration):
    dependencies = [
        ("django_scheduled_actions", "0007_one_retry_per_job"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="scheduledfunction",
            index=models.Index(condition=models.Q(("batch__isnull", False)), fields=["batch", "batch_counted", "state"],
                               name="sa_job_batch_items_idx"),
        ),
        migrations.RemoveIndex(model_name="scheduledfunction", name="sa_job_batch_idx"),
        migrations.AddIndex(
            model_name="scheduledfunction",
            index=models.Index(condition=models.Q(("parent__isnull", False)), fields=["parent"],
                               name="sa_job_parent_idx"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="scheduledfunction",
                    name="parent",
                    field=models.ForeignKey(blank=True, db_index=False, help_text="the job that scheduled this one",
                                            null=True, on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="children", to="django_scheduled_actions.scheduledfunction"),
                ),
                migrations.AlterField(
                    model_name="scheduledfunction",
                    name="cron",
                    field=models.ForeignKey(blank=True, db_index=False, help_text="the cron that fired this job",
                                            null=True, on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="jobs", to="django_scheduled_actions.cronjob"),
                ),
                migrations.AlterField(
                    model_name="scheduledfunction",
                    name="retry_of",
                    field=models.ForeignKey(blank=True, db_index=False,
                                            help_text="the failed or canceled job this one retries", null=True,
                                            on_delete=django.db.models.deletion.SET_NULL, related_name="retries",
                                            to="django_scheduled_actions.scheduledfunction"),
                ),
            ],
            database_operations=[migrations.RunPython(drop_foreign_key_indexes, create_foreign_key_indexes)],
        ),
        migrations.RemoveIndex(model_name="scheduledfunction", name="sa_job_finished_idx"),
        migrations.AddIndex(
            model_name="scheduledfunction",
            index=models.Index(condition=models.Q(("completed_time__isnull", False)), fields=["completed_time"],
                               name="sa_job_finished_idx"),
        ),
    ]
