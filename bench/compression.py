#!/usr/bin/env python
"""zlib against zstd on the payloads a cache holds: µs per KB and size ratio.

Two realistic values, serialized the way the backend does it
(``tiered_cache.serializers``):

* ``html``: a product-list page rendered by Django's template engine (what
  ``cache_page`` and ``{% cache %}`` store), a few KB, pickled as a str;
* ``json``: an API-style list of records (ids, names, prices, tags, dates as
  text), a few KB, with SERIALIZER "json" and with pickle.

For each payload and compressor (zlib level 1 and 6, the tiers' default; zstd
level 1 and 3, its default) it prints the compressed size as a share of the
payload, and the best-of-``--repeat`` time of one compress and one decompress
per KB of payload (``time.perf_counter`` around ``--number`` calls). A small
value's timing is a few µs: read the ratios between rows, not the digits.

    python bench/compression.py [--kb 4] [--repeat 7] [--number 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<link rel="stylesheet" href="/static/site.css"></head>
<body><header class="site-header"><nav><ul class="menu">
{% for link in menu %}<li class="menu-item">
<a href="{{ link.url }}">{{ link.label }}</a></li>{% endfor %}</ul></nav></header>
<main class="container"><h1>{{ title }}</h1>
<ul class="products">{% for p in products %}
<li class="product" data-id="{{ p.id }}"><a href="/products/{{ p.slug }}/">
<img src="/media/products/{{ p.slug }}.jpg" alt="{{ p.name }}" width="160" height="120">
<span class="name">{{ p.name }}</span></a>
<span class="price">{{ p.price }} EUR</span>
{% if p.stock %}<span class="stock in">In stock ({{ p.stock }})</span>
{% else %}<span class="stock out">Sold out</span>{% endif %}
</li>{% endfor %}</ul></main>
<footer><p>&copy; 2026 Example Shop &middot; <a href="/legal/">Legal</a></p></footer>
</body></html>"""

WORDS = ["alpha", "brisk", "cedar", "delta", "ember"]
WORDS += ["fjord", "grove", "harbor", "iris", "jade"]


def products(count: int) -> list[dict]:
    return [
        {
            "id": 1000 + i,
            "slug": f"{WORDS[i % 10]}-{WORDS[(i * 7) % 10]}-{i}",
            "name": f"{WORDS[i % 10].title()} {WORDS[(i * 3) % 10]} {i}",
            "price": f"{(i * 37) % 200 + 0.99:.2f}",
            "stock": (i * 13) % 9,
            "tags": [WORDS[(i + k) % 10] for k in range(i % 4)],
            "updated": f"2026-11-{i % 28 + 1:02d}T10:{i % 60:02d}:00Z",
        }
        for i in range(count)
    ]


def html_page(kb: int) -> str:
    from django.template import Context, Engine

    template = Engine().from_string(PAGE)
    count = 1
    while True:
        page = template.render(
            Context(
                {
                    "title": "Products",
                    "menu": [{"url": f"/{w}/", "label": w.title()} for w in WORDS],
                    "products": products(count),
                }
            )
        )
        if len(page) >= kb * 1024:
            return page
        count += 1


def json_records(kb: int) -> list[dict]:
    from tiered_cache.serializers import JSON

    count = 1
    while len(JSON.dumps(products(count))) < kb * 1024:
        count += 1
    return products(count)


def compressors() -> dict[str, tuple[Callable, Callable]]:
    found: dict[str, tuple[Callable, Callable]] = {
        "zlib-1": (lambda b: zlib.compress(b, 1), zlib.decompress),
        "zlib-6": (lambda b: zlib.compress(b, 6), zlib.decompress),
    }
    try:
        import zstandard
    except ImportError:
        return found
    for level in (1, 3):
        packer = zstandard.ZstdCompressor(level=level)
        unpacker = zstandard.ZstdDecompressor()
        found[f"zstd-{level}"] = (packer.compress, unpacker.decompress)
    return found


def best(call: Callable[[], object], repeat: int, number: int) -> float:
    """Return the best time of one call, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            call()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=4, help="payload size (KB)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from tiered_cache.serializers import JSON, PICKLE

    records = json_records(args.kb)
    payloads = {
        "html (pickle)": PICKLE.dumps(html_page(args.kb)),
        "json (json)": JSON.dumps(records),
        "json (pickle)": PICKLE.dumps(records),
    }
    import zstandard  # noqa: F401  (the versions line)

    print(
        f"Python {platform.python_version()}, zlib {zlib.ZLIB_RUNTIME_VERSION}, "
        f"zstandard {sys.modules['zstandard'].__version__}; best of "
        f"{args.repeat} x {args.number} calls"
    )
    header = f"{'payload':<14} {'bytes':>6} {'codec':<7} {'size':>6} "
    print(header + f"{'compress':>14} {'decompress':>14}")
    for name, payload in payloads.items():
        kb = len(payload) / 1024
        for codec, (pack, unpack) in compressors().items():
            packed = pack(payload)
            assert unpack(packed) == payload
            packing = best(partial(pack, payload), args.repeat, args.number)
            unpacking = best(partial(unpack, packed), args.repeat, args.number)
            print(
                f"{name:<14} {len(payload):>6} {codec:<7} "
                f"{len(packed) / len(payload):>6.1%} "
                f"{packing * 1e6 / kb:>8.2f} µs/KB {unpacking * 1e6 / kb:>8.2f} µs/KB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
