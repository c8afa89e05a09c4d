from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("functions/", include("django_scheduled_actions.urls")),
    path("demo/", include("demo.urls")),
    path("fake-provider/", include("patterns.urls")),
    path("", RedirectView.as_view(url="/admin/django_scheduled_actions/scheduledfunction/")),
]
