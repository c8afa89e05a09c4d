# Trace contexts (docs/how-to/observability.md): where a job or a workflow run was scheduled, for its spans to continue.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_scheduled_actions', '0015_rate_limits'),
    ]

    operations = [
        migrations.AddField(
            model_name='scheduledfunction',
            name='trace_context',
            field=models.CharField(blank=True, editable=False, help_text='the W3C trace context it was scheduled in (traceparent, then tracestate): its span continues it', max_length=1024, null=True),
        ),
        migrations.AddField(
            model_name='workflowrun',
            name='trace_context',
            field=models.CharField(blank=True, editable=False, help_text='the W3C trace context it was started in: every replay and step continues that trace', max_length=1024, null=True),
        ),
    ]
