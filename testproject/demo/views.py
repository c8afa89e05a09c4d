"""The demo page: a button calls a public mutation over HTTP and the page polls a public query."""

from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from . import functions


def function_url(fn) -> str:
    return reverse("scheduled_actions:call", args=[fn.name])


@ensure_csrf_cookie
def index(request):
    return render(
        request,
        "demo/index.html",
        {
            "place_order_url": function_url(functions.place_order),
            "order_status_url": function_url(functions.order_status),
        },
    )
