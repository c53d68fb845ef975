"""``manage.py warm_cache``: fill the shared tiers with the keys predicted hot.

A thin command over ``tiered_cache.warming.run.warm`` (docs/warming.rst).
Run it in its own process (cron, a deploy step): it writes L2/L3, which
every web process reads, and publishes the warm set they may preload.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tiered_cache.metrics.flusher import tiered_aliases
from tiered_cache.warming.run import WarmReport, warm


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value

    parse.__name__ = kind.__name__
    return parse


class Command(BaseCommand):
    help = (
        "Re-run the warmers of the keys the access history predicts hot and "
        "missing from L2/L3, then publish the warm set."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--cache", default="default", help="the TieredCache alias (default)"
        )
        parser.add_argument(
            "--limit",
            type=_positive(int),
            default=1000,
            help="how many of the best-scored keys to plan (default 1000)",
        )
        parser.add_argument(
            "--rate",
            type=_positive(float),
            default=None,
            help="at most this many keys warmed (or pages requested) per second",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="plan and look at L2/L3, write nothing",
        )
        parser.add_argument(
            "--json", action="store_true", help="print the report as JSON"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["cache"]
        if alias not in tiered_aliases():
            raise CommandError(f"not a TieredCache alias: {alias}")
        tty = not options["json"] and self.stdout.isatty()
        report = warm(
            alias,
            limit=options["limit"],
            rate=options["rate"],
            dry_run=options["dry_run"],
            progress=self._bar if tty else None,
        )
        if tty:
            self.stdout.write("")
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, sort_keys=True))
        else:
            self.stdout.write(self._summary(report))
        if not report.ok:
            parts = [f"{report.failed} key(s) failed"] if report.failed else []
            if report.pages_failed:
                parts.append(f"{report.pages_failed} page(s) failed")
            if report.interrupted:
                parts.append("interrupted, run again to resume")
            parts += report.errors[:1]
            raise CommandError(f"warming incomplete ({'; '.join(parts)})")

    def _bar(self, done: int, planned: int) -> None:
        width = 30
        filled = width * done // max(1, planned)
        bar = "#" * filled + "." * (width - filled)
        self.stdout.write(f"\r[{bar}] {done}/{planned}", ending="")
        self.stdout.flush()

    def _summary(self, report: WarmReport) -> str:
        lines = [
            f"{report.alias}: {report.planned} key(s) planned"
            + (" (dry run)" if report.dry_run else "")
            + (
                f", resumed at {report.resumed_from}"
                if report.resumed_from is not None
                else ""
            ),
            f"  held in L2/L3 already: {report.held}",
            (
                f"  would warm: {report.would_warm}"
                if report.dry_run
                else f"  warmed: {report.warmed}"
            ),
            f"  failed: {report.failed}",
            f"  no warmer: {report.no_warmer}",
        ]
        if report.pages:
            lines.append(
                f"  pages requested: {report.pages} ({report.pages_failed} failed)"
            )
        if report.published is not None:
            lines.append(f"  warm set published: {report.published} key(s)")
        if report.interrupted:
            lines.append("  interrupted: the checkpoint is saved, run again to resume")
        lines += [f"  error: {error}" for error in report.errors]
        return "\n".join(lines)
