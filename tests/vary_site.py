"""A small site whose pages depend on request variants, for docs/faults.rst E38.

Every page renders what it depends on: the host (``request.get_host()``, so
a host outside ``ALLOWED_HOSTS`` is a 400 with or without a cache), the
language ``LocaleMiddleware`` chose, and, per view, the ``Authorization``
header, the session's user or a ``theme`` cookie. Each view is served three
ways, as a Django user would write them:

* ``plain``: no cache at all: the oracle of what a request should get;
* ``site``: the same views behind the per-site cache middleware
  (``UpdateCacheMiddleware`` first, ``FetchFromCacheMiddleware`` last);
* ``decorated``: each view behind ``cache_page`` (with ``vary_on_headers`` /
  ``vary_on_cookie`` where the view declares what it reads).

A client picks its URL configuration through a WSGI environ key (``ROUTE``),
not a header, so the requests the cache sees carry only the variant headers.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.cache import cache_page
from django.views.decorators.vary import vary_on_cookie, vary_on_headers

__all__ = [
    "MODES",
    "ROUTE",
    "Page",
    "RouteMiddleware",
    "middleware_for",
    "pages",
    "route_to",
]

#: The WSGI environ key that names a client's URL configuration.
ROUTE = "vary_site.route"
TIMEOUT = 600
MODES = ("site", "decorated")

_SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
_LOCALE = "django.middleware.locale.LocaleMiddleware"
_ROUTE = "tests.vary_site.RouteMiddleware"


def _page(request: HttpRequest, name: str, *facts: str) -> HttpResponse:
    parts = [name, f"host={request.get_host()}", f"lang={request.LANGUAGE_CODE}"]
    return HttpResponse(" ".join([*parts, *facts]), content_type="text/plain")


def public(request: HttpRequest) -> HttpResponse:
    return _page(request, "public")


def auth(request: HttpRequest) -> HttpResponse:
    """Depends on ``Authorization`` (an API token) and declares it."""
    return _page(request, "auth", f"auth={request.headers.get('Authorization')}")


def auth_undeclared(request: HttpRequest) -> HttpResponse:
    """Depends on ``Authorization`` and declares nothing: Django's rule applies."""
    return _page(request, "auth", f"auth={request.headers.get('Authorization')}")


def session(request: HttpRequest) -> HttpResponse:
    """Reads the session: ``SessionMiddleware`` adds ``Vary: Cookie``."""
    return _page(request, "session", f"user={request.session.get('user')}")


def theme(request: HttpRequest) -> HttpResponse:
    """Reads a plain cookie and declares it with ``vary_on_cookie``."""
    return _page(request, "theme", f"theme={request.COOKIES.get('theme')}")


@dataclass(frozen=True)
class Page:
    """One URL of the site and how its cached form is declared."""

    name: str
    view: Callable[[HttpRequest], HttpResponse]
    #: decorators a user writes under ``cache_page``, innermost last
    declares: tuple[Callable, ...] = ()
    #: whether the mode keeps every variant apart (False: Django's rule leaks)
    safe_in: tuple[str, ...] = MODES


PAGES = (
    Page("public", public),
    Page("auth", auth, (vary_on_headers("Authorization"),)),
    Page("auth-undeclared", auth_undeclared, safe_in=()),
    # Per-site middleware sees the Vary: Cookie SessionMiddleware adds; a
    # cache_page decorator stores the page before SessionMiddleware adds it.
    Page("session", session, (vary_on_cookie,)),
    Page("session-undeclared", session, safe_in=("site",)),
    Page("theme", theme, (vary_on_cookie,)),
)


def pages() -> tuple[Page, ...]:
    return PAGES


def _declared(page: Page) -> Callable[[HttpRequest], HttpResponse]:
    view = page.view
    for decorator in reversed(page.declares):
        view = decorator(view)
    return view


def _urlconf(route: str, build: Callable[[Page], Callable]) -> types.ModuleType:
    module = types.ModuleType(f"tests.vary_site.urls_{route}")
    module.urlpatterns = [path(f"{p.name}/", build(p)) for p in PAGES]  # type: ignore[attr-defined]
    return module


_URLCONFS: dict[str, types.ModuleType] = {}
#: ROOT_URLCONF of the site: empty, every client is routed (RouteMiddleware).
urlpatterns: list = []


def route_to(route: str, cache_alias: str | None = None) -> str:
    """Return the route name of ``route`` (``plain``, ``site``, ``decorated``).

    ``decorated`` needs the alias its ``cache_page`` decorators use; each
    alias gets URL patterns of its own (built once), at the same paths.
    """
    name = route if cache_alias is None else f"{route}:{cache_alias}"
    if name not in _URLCONFS:
        if route == "decorated":
            build = lambda p: cache_page(TIMEOUT, cache=cache_alias)(_declared(p))  # noqa: E731
        else:
            build = _declared
        _URLCONFS[name] = _urlconf(name.replace(":", "_"), build)
    return name


class RouteMiddleware:
    """Serve the request with the URL configuration its client was built for."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.urlconf = _URLCONFS[request.META[ROUTE]]
        return self.get_response(request)


def middleware_for(mode: str | None) -> list[str]:
    """Return ``MIDDLEWARE`` for ``mode`` (None: no cache middleware)."""
    if mode == "site":
        return [
            _ROUTE,
            "django.middleware.cache.UpdateCacheMiddleware",
            _SESSION,
            _LOCALE,
            "django.middleware.cache.FetchFromCacheMiddleware",
        ]
    return [_ROUTE, _SESSION, _LOCALE]
