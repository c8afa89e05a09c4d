"""What only some databases get, so the model state stays the same everywhere:

- PostgreSQL: a trigger that NOTIFYs workers when a job becomes pending (delivered on commit).
- MySQL / MariaDB: they have no partial indexes (Django builds sa_job_due_idx and sa_job_lease_idx
  there without their conditions), so the claim and the lease recovery get composite indexes led by state.
"""

from django.db import migrations

PG_NOTIFY = [
    """
CREATE OR REPLACE FUNCTION scheduled_actions_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('scheduled_actions', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql""",
    """CREATE TRIGGER scheduled_actions_job_inserted
    AFTER INSERT ON scheduled_actions_job
    FOR EACH STATEMENT EXECUTE FUNCTION scheduled_actions_notify()""",
    """CREATE TRIGGER scheduled_actions_job_pending
    AFTER UPDATE OF state, scheduled_time ON scheduled_actions_job
    FOR EACH ROW WHEN (NEW.state = 'pending') EXECUTE FUNCTION scheduled_actions_notify()""",
]
PG_NOTIFY_DROP = [
    "DROP TRIGGER IF EXISTS scheduled_actions_job_pending ON scheduled_actions_job",
    "DROP TRIGGER IF EXISTS scheduled_actions_job_inserted ON scheduled_actions_job",
    "DROP FUNCTION IF EXISTS scheduled_actions_notify()",
]
MYSQL_INDEXES = [
    "CREATE INDEX sa_job_due_mysql_idx ON scheduled_actions_job (state, priority, scheduled_time)",
    "CREATE INDEX sa_job_lease_mysql_idx ON scheduled_actions_job (state, lease_expires_at)",
]
MYSQL_INDEXES_DROP = ["DROP INDEX sa_job_due_mysql_idx ON scheduled_actions_job",
                      "DROP INDEX sa_job_lease_mysql_idx ON scheduled_actions_job"]


def run(statements):
    def apply(apps, schema_editor):
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return apply


forwards = run({"postgresql": PG_NOTIFY, "mysql": MYSQL_INDEXES})
backwards = run({"postgresql": PG_NOTIFY_DROP, "mysql": MYSQL_INDEXES_DROP})


class Migration(migrations.Migration):
    dependencies = [("django_scheduled_actions", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards, atomic=False, elidable=False)]
