"""``manage.py cache_stats``: the deployment's cache numbers in the terminal.

A thin command over ``tiered_cache.metrics.read_summary``: the numbers every
process has flushed to the shared store, so it shows the whole deployment
from any machine, not the process running it.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tiered_cache.history.flush import read_curve
from tiered_cache.metrics import read_summary
from tiered_cache.metrics.durations import parse_duration
from tiered_cache.metrics.flusher import flusher, tiered_aliases
from tiered_cache.metrics.store import RETENTION
from tiered_cache.metrics.summary import by_caller

_COLUMNS = ("hits", "misses", "hit_ratio", "sets", "deletes", "errors")


class Command(BaseCommand):
    help = (
        "Show hits, misses, hit ratio, writes and errors per TieredCache alias "
        "and tier, added up over every process of the deployment."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help='print {alias: {"total": {...}, "tiers": {...}}} as JSON',
        )
        parser.add_argument(
            "--since",
            default="24h",
            help="how far back: 90s, 15m, 1h, 24h (the default: all the store "
            "keeps, 24 hours)",
        )
        parser.add_argument(
            "--cache",
            action="append",
            dest="aliases",
            metavar="ALIAS",
            help="only this alias (repeatable); default every TieredCache",
        )

    def run_from_argv(self, argv: list[str]) -> None:
        # Run as a process of its own (manage.py): a reader, so what it counts
        # while it reads (its bus listener's calls, its exit) is not sent as
        # the deployment's traffic. Not from call_command: a worker that runs
        # the command in-process keeps sending its own counters.
        flusher.only_read()
        super().run_from_argv(argv)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            since = parse_duration(options["since"])
        except ValueError as exc:
            raise CommandError(f"--since: {exc}") from None
        if since > RETENTION:
            raise CommandError(
                f"--since: {options['since']} is more than the store keeps "
                f"({_human(RETENTION)}): ask for {_human(RETENTION)} or less"
            )
        known = tiered_aliases()
        aliases = options["aliases"] or known
        unknown = [alias for alias in aliases if alias not in known]
        if unknown:
            raise CommandError(
                f"not a TieredCache alias: {', '.join(unknown)} (these are: "
                f"{', '.join(known) or 'none'})"
            )
        summaries = {}
        for alias in aliases:
            try:
                summaries[alias] = read_summary(alias, since)
                # HISTORY on: the L1 miss-ratio curve (None when off).
                summaries[alias]["l1_curve"] = read_curve(alias)
            except Exception as exc:  # the store (L2) does not answer
                raise CommandError(
                    f"{alias}: cannot read the metrics store ({exc})"
                ) from exc
        if options["json"]:
            self.stdout.write(json.dumps(summaries, indent=2, sort_keys=True))
            return
        if not summaries:
            self.stdout.write("No TieredCache in settings.CACHES.")
        for alias, summary in summaries.items():
            self.stdout.write(self._table(alias, summary))

    def _table(self, alias: str, summary: dict[str, Any]) -> str:
        header = (
            f"{alias}: last {_human(summary['since'])}, "
            f"{summary['processes']} live process(es), store {summary['store']}"
        )
        rows = [("tier", *_COLUMNS, "breaker")]
        for name, info in summary["tiers"].items():
            rows.append((name, *(_cell(info[c]) for c in _COLUMNS), info["breaker"]))
        rows.append(("total", *(_cell(summary["total"][c]) for c in _COLUMNS), ""))
        widths = [max(len(str(row[i] or "")) for row in rows) for i in range(8)]
        lines = [header]
        for row in rows:
            cells = [str(value or "-" if value != 0 else 0) for value in row]
            lines.append(
                "  ".join(
                    cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                    for i, cell in enumerate(cells)
                )
            )
        curve = summary.get("l1_curve")
        if curve is not None:
            points = ", ".join(
                f"{size} {_cell(ratio) if ratio is not None else '-'}"
                for size, ratio in curve["hit_ratio"].items()
            )
            lines.append(
                f"  L1 hit ratio at {points} of its size ({curve['entries']} "
                f"entries; LRU estimate over {curve['processes']} process(es))"
            )
        user, internal = by_caller(summary["latency"])
        for heading, latency in (("calls", user), ("the cache's own calls", internal)):
            if latency:
                lines.append(f"latency of {heading} below L1:")
            for op, info in latency.items():
                lines.append(
                    f"  {op}: {info['count']} calls, p50 <= {info['p50_ms']} ms, "
                    f"p99 <= {info['p99_ms']} ms"
                )
        return "\n".join(lines) + "\n"


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.1%}"
    return value


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
