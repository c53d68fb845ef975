from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("testproject.demo.urls")),
]

if settings.CHAOS:  # bench/chaos.py only: never on by default
    urlpatterns.append(path("chaos/", include("testproject.demo.chaos")))
