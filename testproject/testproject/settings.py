"""Settings for the demo site.

Environment variables:

``DJANGO_DEBUG``
    ``0``/``false`` turns DEBUG off (default: on).
``DJANGO_SECRET_KEY``
    The secret key (default: an insecure development key).
``REDIS_URL``
    Where the L2 tier lives (default ``redis://127.0.0.1:6379/0``). When nothing
    answers there at start-up, the cache runs L1 + L3 only.
``TESTPROJECT_CACHE``
    ``locmem`` replaces the tiered cache with Django's LocMemCache: an escape hatch
    to compare against, or to run the site without the backend.
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
_L2 = {"NAME": "l2", "BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}
_L3 = {
    "NAME": "l3",
    "BACKEND": "diskcache.DjangoCache",
    "LOCATION": str(VAR_DIR / "cache-l3"),
    "OPTIONS": {"size_limit": 2**30},
}

if os.environ.get("TESTPROJECT_CACHE") == "locmem":
    CACHE_DESCRIPTION = "LocMemCache (TESTPROJECT_CACHE=locmem)"
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "testproject",
            "KEY_PREFIX": "testproject",
        }
    }
else:
    if _redis_reachable(REDIS_URL):
        CACHE_DESCRIPTION = f"tiered cache: l1 + l2 ({REDIS_URL}) + l3"
        _TIERS = [_L1, _L2, _L3]
    else:
        CACHE_DESCRIPTION = f"tiered cache: l1 + l3 (no Redis at {REDIS_URL})"
        _TIERS = [_L1, _L3]
    CACHES = {
        "default": {
            "BACKEND": "tiered_cache.TieredCache",
            "KEY_PREFIX": "testproject",
            "OPTIONS": {"TIERS": _TIERS},
        }
    }

print(f"testproject cache: {CACHE_DESCRIPTION}", file=sys.stderr)
