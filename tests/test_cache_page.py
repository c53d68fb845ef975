"""``cache_page`` and ``Vary`` with hostile request variants (docs/faults.rst E38).

Which requests share a cached page is decided by Django's cache middleware
(from the response's ``Vary`` header and the request), not by the backend. So
the oracle test sends generated sequences of requests over
``tests/vary_site.py`` to a TieredCache (L1 + a real redis-server + L3) and
checks:

* for every view that declares what it reads, the page served is the one the
  uncached view renders for that very request (no variant gets another's),
  also when the requests are spread over two ``TieredCache`` instances that
  share L2 and L3 but each have their own L1, as two processes would;
* within one instance, every page is the one ``LocMemCache`` serves for the
  same sequence: whatever Django decides, the backend adds no leak.

The views that declare nothing show Django's own rules, pinned by the
example tests at the end with both backends.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import vary_site
from tests.flights import l1
from tests.matrix import l3, real_l2

pytestmark = pytest.mark.redis_server

BACKENDS = ("locmem", "tiered_a", "tiered_b")
_stores = itertools.count()

# The variants. Hosts: allowed (any case, with a port), and hostile: not in
# ALLOWED_HOSTS, or sneaked in through X-Forwarded-Host.
HOSTS = [
    "testserver",
    "TESTSERVER",
    "testserver:80",
    "testserver:8080",
    "www.example.com",
    "evil.example",
    "testserver.evil.example",
]
FORWARDED = [None, "www.example.com", "evil.example", "testserver:8080"]
AUTHORIZATION = [None, "", "Bearer alice", "Bearer bob", "bearer alice"]
SESSIONS = [None, "alice", "bob", "forged"]
THEMES = [None, "dark", "light"]
ACCEPT_LANGUAGE = [None, "fr", "de-DE,de;q=0.9", "fr-CA", "xx", "en;q=0.1, de"]
LANGUAGE_COOKIE = [None, "de", "fr"]


@dataclass(frozen=True)
class Variant:
    """One request: which page, how, and every header the pages may depend on."""

    page: str
    method: str
    host: str
    forwarded: str | None
    authorization: str | None
    session: str | None
    theme: str | None
    accept_language: str | None
    language_cookie: str | None
    query: str

    def environ(self, cookies: dict[str, str]) -> dict[str, str]:
        """Return the WSGI environ of this request (absent headers left out)."""
        env = {"HTTP_HOST": self.host}
        jar = []
        if self.session is not None:
            jar.append(f"sessionid={cookies[self.session]}")
        if self.theme is not None:
            jar.append(f"theme={self.theme}")
        if self.language_cookie is not None:
            jar.append(f"django_language={self.language_cookie}")
        env["HTTP_COOKIE"] = "; ".join(jar)  # also hides the client's own jar
        for name, value in (
            ("HTTP_X_FORWARDED_HOST", self.forwarded),
            ("HTTP_AUTHORIZATION", self.authorization),
            ("HTTP_ACCEPT_LANGUAGE", self.accept_language),
        ):
            if value is not None:
                env[name] = value
        return env


#: Every dimension of a request and the values it can take.
DIMENSIONS: dict[str, list[Any]] = {
    "page": [p.name for p in vary_site.pages()],
    "method": ["GET", "HEAD"],
    "host": HOSTS,
    "forwarded": FORWARDED,
    "authorization": AUTHORIZATION,
    "session": SESSIONS,
    "theme": THEMES,
    "accept_language": ACCEPT_LANGUAGE,
    "language_cookie": LANGUAGE_COOKIE,
    "query": ["", "?a=1"],
}


@st.composite
def sequences(draw: st.DrawFn) -> list[tuple[str, Variant]]:
    """Requests, each with the TieredCache instance ("process") that serves it.

    Each example first narrows every dimension to one or two values, so
    requests often share a cache key while differing in some header: the
    sequences where a page could reach the wrong variant.
    """
    narrowed = {
        name: draw(
            st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True)
        )
        for name, values in DIMENSIONS.items()
    }
    requests = []
    for _ in range(draw(st.integers(min_value=1, max_value=14))):
        fields = {
            name: draw(st.sampled_from(values)) for name, values in narrowed.items()
        }
        instance = draw(st.sampled_from(["tiered_a", "tiered_b"]))
        requests.append((instance, Variant(**fields)))
    return requests


class Site:
    """Clients for the oracle and for each backend, in one cache mode."""

    def __init__(self, mode: str, cookies: dict[str, str]) -> None:
        self.mode = mode
        self.cookies = cookies
        self.oracle = self._client(None, vary_site.route_to("plain"))
        self.clients = {
            alias: self._client(
                alias,
                vary_site.route_to("plain")
                if mode == "site"
                else vary_site.route_to("decorated", alias),
            )
            for alias in BACKENDS
        }
        self.safe = {p.name for p in vary_site.pages() if mode in p.safe_in}

    def _client(self, alias: str | None, route: str) -> Client:
        middleware = vary_site.middleware_for(self.mode if alias else None)
        with override_settings(MIDDLEWARE=middleware, CACHE_MIDDLEWARE_ALIAS=alias):
            client = Client(**{vary_site.ROUTE: route})
            client.handler.load_middleware()  # reads the two settings now
        return client

    def ask(self, client: Client, variant: Variant) -> tuple[int, str]:
        response = client.generic(
            variant.method,
            f"/{variant.page}/{variant.query}",
            **variant.environ(self.cookies),
        )
        return response.status_code, response.content.decode()

    def clear(self) -> None:
        for alias in BACKENDS:
            caches[alias].clear()


def signed_sessions() -> dict[str, str]:
    """Session cookies (signed_cookies engine) of alice, bob and a forged one."""
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    cookies = {"forged": "eyJ1c2VyIjoiYWxpY2UifQ:forged:signature"}
    for user in ("alice", "bob"):
        store = SessionStore()
        store["user"] = user
        store.save()
        cookies[user] = store.session_key
    return cookies


@pytest.fixture(params=[False, True], ids=["host", "x-forwarded-host"])
def site_settings(request, redis_server, tmp_path) -> Iterator[dict[str, Any]]:
    """Settings of the site: i18n, signed-cookie sessions and the three caches."""
    url = redis_server.url(7)
    shared = [real_l2(url), l3(str(tmp_path / "l3"))]
    store = next(_stores)
    tiered = {"BACKEND": "tiered_cache.TieredCache", "KEY_PREFIX": f"vary{store}"}
    values = {
        "ROOT_URLCONF": "tests.vary_site",
        "ALLOWED_HOSTS": ["testserver", "www.example.com"],
        "USE_X_FORWARDED_HOST": request.param,
        "USE_I18N": True,
        "LANGUAGE_CODE": "en",
        "LANGUAGES": [("en", "English"), ("fr", "French"), ("de", "German")],
        "SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies",
        "CACHES": {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "locmem": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": f"vary-{store}",
            },
            "tiered_a": {**tiered, "OPTIONS": {"TIERS": [l1(0), *shared]}},
            "tiered_b": {**tiered, "OPTIONS": {"TIERS": [l1(1), *shared]}},
        },
    }
    with override_settings(**values):
        yield values
        for alias in BACKENDS:
            caches[alias].clear()
            assert getattr(caches[alias], "check", list)() == []


@pytest.mark.parametrize("mode", vary_site.MODES)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=sequences(), one_process=st.booleans())
def test_no_variant_gets_another_variants_page(
    site_settings, mode, sequence, one_process
):
    """Every declared page is the oracle's; in one process, LocMemCache's too.

    With ``one_process`` every request goes to the same TieredCache
    instance, which must serve exactly what LocMemCache serves. Otherwise
    the requests are spread over two instances: then one instance's L1 may
    still hold the header list Django keeps per URL after the other replaced
    it (until the bus drops the copy), so for views whose ``Vary`` depends on
    the request, which of Django's pages is served depends on timing; a view
    that declares what it reads must still get the oracle's page every time.
    """
    site = Site(mode, signed_sessions())
    site.clear()
    for number, (tiered, variant) in enumerate(sequence):
        if one_process:
            tiered = "tiered_a"
        expected = site.ask(site.oracle, variant)
        django_rule = site.ask(site.clients["locmem"], variant)
        served = site.ask(site.clients[tiered], variant)
        where = f"request {number} ({tiered}) of {sequence}"
        if variant.page in site.safe:
            assert served == expected, where
        if one_process:
            assert served == django_rule, where  # no leak LocMemCache lacks


# -- Django's rules, pinned with both backends --------------------------------


def _request(page: str, **headers: str | None) -> Variant:
    base = dict.fromkeys(
        ["forwarded", "authorization", "session", "theme", "accept_language"]
    )
    base.update(language_cookie=None, **headers)
    return Variant(page, "GET", "testserver", query="", **base)


def _run(mode: str, alias: str, requests: list[Variant]) -> list[str]:
    """Bodies the backend ``alias`` serves for ``requests`` (in mode ``mode``)."""
    site = Site(mode, signed_sessions())
    site.clear()
    return [site.ask(site.clients[alias], variant)[1] for variant in requests]


@pytest.mark.parametrize("alias", ["locmem", "tiered_a"])
@pytest.mark.parametrize("mode", vary_site.MODES)
def test_undeclared_authorization_serves_the_anonymous_page_to_a_token(
    site_settings, mode, alias
):
    """Django varies on ``Authorization`` only for requests that carried one.

    ``UpdateCacheMiddleware`` adds ``Vary: Authorization`` to a page stored
    for a request with that header, but a page stored for a request without
    it varies on nothing, and the header list of the URL is overwritten with
    it: later requests, with any token, get that anonymous page.
    """
    bodies = _run(
        mode,
        alias,
        [
            _request("auth-undeclared"),
            _request("auth-undeclared", authorization="Bearer alice"),
        ],
    )
    assert bodies == ["auth host=testserver lang=en auth=None"] * 2


@pytest.mark.parametrize("alias", ["locmem", "tiered_a"])
def test_undeclared_authorization_with_tokens_first_matches_locmem(
    site_settings, alias
):
    """Tokens first: what Django does is the same with both backends."""
    requests = [
        _request("auth-undeclared", authorization="Bearer alice"),
        _request("auth-undeclared", authorization="Bearer bob"),
        _request("auth-undeclared"),
        _request("auth-undeclared", authorization="Bearer bob"),
    ]
    assert _run("site", alias, requests) == _run("site", "locmem", requests)


@pytest.mark.parametrize("alias", ["locmem", "tiered_a"])
def test_cache_page_on_a_session_view_needs_vary_on_cookie(site_settings, alias):
    """``SessionMiddleware`` adds ``Vary: Cookie`` after ``cache_page`` stored."""
    requests = [
        _request("session-undeclared", session="alice"),
        _request("session-undeclared", session="bob"),
    ]
    leaked = _run("decorated", alias, requests)
    assert leaked == ["session host=testserver lang=en user=alice"] * 2
    declared = [_request("session", session=u) for u in ("alice", "bob")]
    assert _run("decorated", alias, declared) == [
        "session host=testserver lang=en user=alice",
        "session host=testserver lang=en user=bob",
    ]
    # The per-site middleware sees the header: no leak without vary_on_cookie.
    assert _run("site", alias, requests) == [
        "session host=testserver lang=en user=alice",
        "session host=testserver lang=en user=bob",
    ]
