from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from testproject.demo.metrics import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("load/", include("testproject.demo.load")),
    path("", include("testproject.demo.urls")),
]

if settings.CHAOS:  # bench/chaos.py only: never on by default
    urlpatterns.append(path("chaos/", include("testproject.demo.chaos")))
