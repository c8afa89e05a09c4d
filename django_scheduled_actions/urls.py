"""URLs of public functions: ``path("functions/", include("django_scheduled_actions.urls"))``.

``<path:name>`` accepts registered names as they are, dots and colons included:
``POST /functions/shop.functions:place_order``.
"""

from django.urls import path

from . import views

app_name = "scheduled_actions"

urlpatterns = [
    path("<path:name>", views.endpoint, name="call"),
]
