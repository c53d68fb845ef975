from django.urls import path

from . import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("slow/<int:item>/", views.slow_item, name="slow"),
    path("fragment/", views.fragment, name="fragment"),
    path("page/", views.page, name="page"),
]
