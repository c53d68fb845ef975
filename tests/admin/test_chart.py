"""The hit-ratio chart: inline SVG, escaped, gaps where nothing was asked."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from tiered_cache_admin.chart import hit_ratio_svg
from tiered_cache_admin.templatetags.tiered_cache_admin import ms, percent

NOW = 1_800_000_000.0


def points(ratios, step=60.0):
    start = NOW - step * (len(ratios) - 1)
    return [{"t": start + i * step, "hit_ratio": r} for i, r in enumerate(ratios)]


def test_one_line_per_tier_on_a_0_to_100_percent_scale():
    svg = hit_ratio_svg(
        {"l1": points([0.9, 1.0, 0.8]), "l2": points([0.0, 0.5, 0.25])},
        window=3600,
        now=NOW,
    )
    root = ET.fromstring(svg)  # well-formed XML
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2
    ys = [float(p.split(",")[1]) for p in lines[0].get("points").split()]
    assert ys[1] < ys[0] < ys[2]  # 100 % is drawn highest
    assert "100 %" in svg and "-60 min" in svg and "now" in svg


def test_a_window_without_requests_breaks_the_line():
    svg = hit_ratio_svg(
        {"l1": points([0.5, 0.6, None, 0.7, 0.8])}, window=3600, now=NOW
    )
    assert svg.count("<polyline") == 2


def test_tier_names_are_escaped():
    svg = hit_ratio_svg({"<b>x</b>": points([0.5, 0.6])}, window=3600, now=NOW)
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg


def test_an_empty_series_says_so():
    svg = hit_ratio_svg({}, window=86400, now=NOW)
    assert "no requests recorded" in svg and "-24 h" in svg
    assert re.search(r"<polyline|<circle", svg) is None


def test_formats():
    assert percent(0.5) == "50.0 %" and percent(None) == "—" and percent(1) == "100.0 %"
    assert ms(0.05) == "50 µs" and ms(12.34) == "12.3 ms"
