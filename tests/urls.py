"""URLs of the test suite: the default admin site, as a user's project has it."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
