"""The fake provider, mounted at ``/fake-provider/`` by the project's urls."""

from django.urls import path

from . import views

app_name = "fake_provider"

urlpatterns = [
    path("email", views.email, name="email"),
    path("charges", views.charges, name="charges"),
    path("subscriptions", views.subscriptions, name="subscriptions"),
    path("subscriptions/<str:external_id>", views.subscription, name="subscription"),
    path("process", views.process, name="process"),
    path("data", views.data, name="data"),
]
