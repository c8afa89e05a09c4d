"""Scheduling from inside a job costs no more than its own row (DESIGN section 3, the guide's core pattern).

- A job's ``parent`` and an idempotency key's ``job`` keep no database constraint: under serializable
  isolation the constraint's check read the parent's primary-key page, where every concurrent insert
  lands. Django still sets them to NULL when the job is deleted.
- PostgreSQL: inserting jobs NOTIFYs the workers only when one of them has no parent. A job scheduled by a
  running job wakes that job's own worker, in the process (``scheduling/jobs.py``), and a worker whose
  claim comes back full wakes the others. NOTIFY takes a database-wide lock at commit, held through the
  commit's flush to disk: every mutation scheduling its next step waited for all the others' commits.
"""

import django.db.models.deletion
from django.db import migrations, models

PG_NOTIFY_ORPHANS = [
    """
CREATE OR REPLACE FUNCTION scheduled_actions_notify_inserted() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE parent_id IS NULL) THEN
        PERFORM pg_notify('scheduled_actions', '');
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS scheduled_actions_job_inserted ON scheduled_actions_job",
    """CREATE TRIGGER scheduled_actions_job_inserted
    AFTER INSERT ON scheduled_actions_job REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION scheduled_actions_notify_inserted()""",
]
PG_NOTIFY_EVERY_INSERT = [
    "DROP TRIGGER IF EXISTS scheduled_actions_job_inserted ON scheduled_actions_job",
    """CREATE TRIGGER scheduled_actions_job_inserted
    AFTER INSERT ON scheduled_actions_job
    FOR EACH STATEMENT EXECUTE FUNCTION scheduled_actions_notify()""",
    "DROP FUNCTION IF EXISTS scheduled_actions_notify_inserted()",
]


def run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("django_scheduled_actions", "0012_workflows"),
    ]

    operations = [
        migrations.AlterField(
            model_name="idempotencykey",
            name="job",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="idempotency_keys",
                to="django_scheduled_actions.scheduledfunction",
            ),
        ),
        migrations.AlterField(
            model_name="scheduledfunction",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                help_text="the job that scheduled this one",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="children",
                to="django_scheduled_actions.scheduledfunction",
            ),
        ),
        migrations.RunPython(run(PG_NOTIFY_ORPHANS), run(PG_NOTIFY_EVERY_INSERT)),
    ]
