"""Schedule a few example jobs so a new user sees work flow through the admin."""

import random

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from demo.functions import place_order, send_expiring_message
from django_scheduled_actions import run_mutation


class Command(BaseCommand):
    help = "Create the demo admin user (admin / admin) and schedule example jobs."

    def add_arguments(self, parser):
        parser.add_argument("--orders", type=int, default=5)

    def handle(self, *args, **options):
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("created superuser admin / admin")
        for _ in range(options["orders"]):
            run_mutation(place_order, {"total_cents": random.randint(500, 5000)})
        run_mutation(send_expiring_message, {"body": "this message deletes itself", "expires_in_seconds": 60})
        self.stdout.write(f"scheduled {options['orders']} orders and one self-destructing message")
        call_command("patterns_seed", stdout=self.stdout)  # the Convex guide's patterns (testproject/patterns)
