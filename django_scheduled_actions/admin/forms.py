"""The admin's cron form: the same validation as code-defined crons (function kind, arguments against
the signature, expression or interval, time zone)."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django import forms

from ..core.registry import registry
from ..cron import schedules
from ..exceptions import FunctionNotFound
from ..models import CronJob


def function_choices() -> list[tuple[str, str]]:
    functions = sorted((f for f in registry.all() if f.kind in ("mutation", "action")), key=lambda f: f.name)
    return [("", "---------")] + [(f.name, f"{f.name} ({f.kind})") for f in functions]


def timezone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class CronJobForm(forms.ModelForm):
    function = forms.ChoiceField(choices=function_choices)
    timezone = forms.ChoiceField(
        choices=timezone_choices, initial="UTC", help_text="IANA time zone in which the expression is evaluated"
    )
    args = forms.JSONField(initial=dict, required=False, help_text="a JSON object matching the function's signature")

    class Meta:
        model = CronJob
        fields = ["name", "function", "args", "expression", "interval_seconds", "timezone", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if "timezone" in self.fields and not self.fields["timezone"].initial:
            self.fields["timezone"].initial = "UTC"

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if "function" in self.fields:  # code-defined crons only show ``enabled``
            self._clean_function_and_args(data)
            self._clean_schedule(data)
        return data

    def _clean_function_and_args(self, data: dict[str, Any]) -> None:
        name, args = data.get("function"), data.get("args")
        if not name:
            return
        try:
            fn = registry.get(name)
        except FunctionNotFound as exc:
            self.add_error("function", str(exc))
            return
        if fn.kind not in ("mutation", "action"):
            self.add_error("function", f"{fn.name} is a {fn.kind}; only mutations and actions can be crons")
            return
        args = {} if args in (None, "") else args
        if not isinstance(args, dict):
            self.add_error("args", "arguments must be a JSON object")
            return
        try:
            data["args"] = fn.validator.to_json(args, from_json=True)
        except ValueError as exc:
            self.add_error("args", str(exc))

    def _clean_schedule(self, data: dict[str, Any]) -> None:
        expression, interval = (data.get("expression") or "").strip(), data.get("interval_seconds")
        if bool(expression) == (interval is not None):
            return  # the model's constraint sa_cron_one_schedule says so
        try:
            schedule = schedules.build(expression, interval, data.get("timezone") or "UTC")
        except schedules.UnknownTimeZone as exc:
            self.add_error("timezone", str(exc))
            return
        except schedules.InvalidInterval as exc:
            self.add_error("interval_seconds", str(exc))
            return
        except schedules.InvalidSchedule as exc:
            self.add_error("expression", str(exc))
            return
        if isinstance(schedule, schedules.Cron):
            data["expression"] = schedule.expression
        else:
            data["timezone"] = "UTC"
