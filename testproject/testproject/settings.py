"""Settings for the demo site.

Environment variables:

``DJANGO_DEBUG``
    ``0``/``false`` turns DEBUG off (default: on).
``DJANGO_SECRET_KEY``
    The secret key (default: an insecure development key).
``REDIS_URL``
    Where the L2 tier lives (default ``redis://127.0.0.1:6379/0``). When nothing
    answers there at start-up, the cache runs L1 + L3 only.
``REDIS_SENTINELS``
    ``host:port,host:port,...``: L2 through Sentinel; ``REDIS_URL`` then names the
    service (``redis://mymaster/0``).
``REDIS_CLUSTER``
    ``redis://host:port,redis://host:port,...``: L2 on a Redis Cluster (these are
    the startup nodes; ``REDIS_URL`` is ignored).
``TESTPROJECT_L3_DIR``
    The L3 folder (default ``var/cache-l3``): two folders are two "machines".
``TESTPROJECT_INVALIDATION``
    ``0`` turns the invalidation bus off (other processes then see a write
    within ``L1_MAX_STALENESS``).
``TESTPROJECT_CHAOS``
    ``1`` adds the ``/chaos/`` views that ``bench/chaos.py`` drives (set and get
    any cache key, no login). Off by default: never turn it on where anyone else
    can reach the site.
``TESTPROJECT_METRICS_PUBLIC``
    ``1`` serves ``/metrics`` (Prometheus) to anyone; by default only to
    logged-in staff.
``TESTPROJECT_METRICS_FLUSH``
    Seconds between two flushes of each process's cache metrics to the shared
    store (default 5).
``TESTPROJECT_CACHE``
    ``locmem`` replaces the tiered cache with Django's LocMemCache: an escape hatch
    to compare against, or to run the site without the backend. ``redis``
    replaces it with django-redis alone (at ``REDIS_URL``) and ``none`` with
    Django's DummyCache (nothing is cached): the other backends ``bench/load.py``
    compares.
"""

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

DEBUG = os.environ.get("DJANGO_DEBUG", "1").lower() not in {"0", "false", "no", "off"}
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-testproject-dev-key-do-not-use-in-production"
)
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "tiered_cache",
    "tiered_cache_admin",
    "testproject.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "db.sqlite3",
    }
}

# A request that fails is logged to stderr with DEBUG off too (Django's default
# logs it only with DEBUG on), so a benchmark's 500s can be explained.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"


# Cache -------------------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_reachable(url, timeout=0.2):
    """Return True when something accepts a TCP connection at the URL's host:port."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            address, family = parts.path, socket.AF_UNIX
        else:
            address = (parts.hostname or "127.0.0.1", parts.port or 6379)
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
    except (OSError, ValueError):
        return False
    return True


_L1 = {
    "NAME": "l1",
    "BACKEND": "tiered_cache.tiers.MemoryTier",
    "OPTIONS": {"MAX_BYTES": 64 * 2**20},
}
REDIS_SENTINELS = os.environ.get("REDIS_SENTINELS", "")
REDIS_CLUSTER = os.environ.get("REDIS_CLUSTER", "")
CHAOS = os.environ.get("TESTPROJECT_CHAOS", "") == "1"
METRICS_PUBLIC = os.environ.get("TESTPROJECT_METRICS_PUBLIC", "") == "1"

if REDIS_CLUSTER:
    _L2 = {
        "NAME": "l2",
        "BACKEND": "tiered_cache.tiers.RedisClusterTier",
        "LOCATION": REDIS_CLUSTER,
    }
elif REDIS_SENTINELS:
    _L2 = {
        "NAME": "l2",
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": [
                (host, int(port))
                for host, _, port in (
                    a.rpartition(":") for a in REDIS_SENTINELS.split(",")
                )
            ],
        },
    }
else:
    _L2 = {
        "NAME": "l2",
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
    }
_L3 = {
    "NAME": "l3",
    "BACKEND": "diskcache.DjangoCache",
    "LOCATION": os.environ.get("TESTPROJECT_L3_DIR") or str(VAR_DIR / "cache-l3"),
    "OPTIONS": {"size_limit": 2**30},
}

_OTHER_CACHES = {
    "locmem": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "testproject",
    },
    "redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL},
    "none": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
}
_OTHER = os.environ.get("TESTPROJECT_CACHE", "")
if _OTHER in _OTHER_CACHES:
    CACHE_DESCRIPTION = (
        f"{_OTHER_CACHES[_OTHER]['BACKEND']} (TESTPROJECT_CACHE={_OTHER})"
    )
    CACHES = {"default": {**_OTHER_CACHES[_OTHER], "KEY_PREFIX": "testproject"}}
else:
    if REDIS_CLUSTER or REDIS_SENTINELS:
        # Several servers: no start-up probe, the tier's breaker copes with them.
        _where = f"cluster {REDIS_CLUSTER}" if REDIS_CLUSTER else REDIS_URL
        CACHE_DESCRIPTION = f"tiered cache: l1 + l2 ({_where}) + l3"
        _TIERS = [_L1, _L2, _L3]
    elif _redis_reachable(REDIS_URL):
        CACHE_DESCRIPTION = f"tiered cache: l1 + l2 ({REDIS_URL}) + l3"
        _TIERS = [_L1, _L2, _L3]
    else:
        CACHE_DESCRIPTION = f"tiered cache: l1 + l3 (no Redis at {REDIS_URL})"
        _TIERS = [_L1, _L3]
    _OPTIONS = {
        "TIERS": _TIERS,
        "METRICS": {
            "FLUSH_INTERVAL": float(os.environ.get("TESTPROJECT_METRICS_FLUSH", "5"))
        },
    }
    if os.environ.get("TESTPROJECT_INVALIDATION") == "0":
        _OPTIONS["INVALIDATION"] = False
    CACHES = {
        "default": {
            "BACKEND": "tiered_cache.TieredCache",
            "KEY_PREFIX": "testproject",
            "OPTIONS": _OPTIONS,
        }
    }

print(f"testproject cache: {CACHE_DESCRIPTION}", file=sys.stderr)
