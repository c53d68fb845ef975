"""Pages ``warm_cache`` requests in tests: views that fill the cache ``w``."""

from django.core.cache import caches
from django.http import HttpResponse
from django.urls import path


def page(name: str):
    def view(request):
        caches["w"].get_or_set(f"page:{name}", f"<h1>{name}</h1>")
        return HttpResponse(f"<h1>{name}</h1>")

    return view


def sitemap(request):
    return HttpResponse(
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        "<url><loc>http://example.com/about/?lang=en</loc></url></urlset>",
        content_type="application/xml",
    )


urlpatterns = [
    path("home/", page("home")),
    path("about/", page("about")),
    path("sitemap.xml", sitemap),
]
