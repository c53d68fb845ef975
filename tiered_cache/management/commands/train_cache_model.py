"""``manage.py train_cache_model``: fit the learned L1 policy's reuse model.

A thin command over ``tiered_cache.learning.train_from_history``. The history
comes from ``tiered_cache.learning.read_history`` (``key_hash,time`` lines):
that function is the seam where the access-history recorder's reader plugs
in. The model is written as versioned JSON to ``--output``; a memory tier
loads it with ``POLICY_OPTIONS={"model_path": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tiered_cache.learning import read_history, train_from_history


class Command(BaseCommand):
    help = (
        "Fit the learned L1 policy's model from a recorded access history; "
        "report validation metrics and a replay against the heuristic."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "history", help="file of key_hash,time lines (or one key per line)"
        )
        parser.add_argument(
            "--capacity",
            type=int,
            required=True,
            help="the L1's size in entries that the model is trained for",
        )
        parser.add_argument(
            "--validation",
            type=float,
            default=0.2,
            help="share of the history (the most recent) held out (default 0.2)",
        )
        parser.add_argument(
            "--output", help="write the model (versioned JSON) to this path"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="fit and report, but write nothing",
        )
        parser.add_argument("--json", action="store_true", help="report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            accesses = read_history(options["history"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the history: {exc}") from exc
        try:
            report = train_from_history(
                accesses, options["capacity"], validation=options["validation"]
            )
        except ImportError as exc:
            raise CommandError(
                f"{exc}: install the [ml] extra (numpy, scikit-learn)"
            ) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        written = options["output"] and not options["dry_run"]
        if written:
            report.model.save(options["output"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, sort_keys=True))
            return
        replay, metrics = report.replay, report.metrics
        self.stdout.write(
            f"trained on {report.train_requests} requests "
            f"({report.train_samples} labelled samples), validated on "
            f"{report.validation_requests} ({report.validation_samples} samples)"
        )
        if options["verbosity"] >= 1:
            for name in ("roc_auc", "log_loss", "accuracy", "positive_rate"):
                if name in metrics:
                    self.stdout.write(f"  {name}: {metrics[name]:.4f}")
            self.stdout.write(
                f"  replay of the held-out part: heuristic "
                f"{100 * replay['heuristic_hit_ratio']:.2f}%, learned "
                f"{100 * replay['learned_hit_ratio']:.2f}% "
                f"({replay['gain_points']:+.2f} points)"
            )
        if written:
            self.stdout.write(f"model written to {options['output']}")
