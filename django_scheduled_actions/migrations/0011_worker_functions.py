"""Workers publish what they can run and the job names they met and could not (deploys.py): rolling deploys."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_scheduled_actions', '0010_idempotency_args_fingerprint'),
    ]

    operations = [
        migrations.AddField(
            model_name='workerprocess',
            name='functions',
            field=models.JSONField(blank=True, default=dict, help_text='what it can run: function name -> kind (see deploys.py)'),
        ),
        migrations.AddField(
            model_name='workerprocess',
            name='unknown',
            field=models.JSONField(blank=True, default=list, help_text='names of jobs it claimed and could not run, left for other workers'),
        ),
    ]
