"""``manage.py train_cache_model``: report, model file, dry run, errors."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.policy.test_learned import zipf_with_scans
from tiered_cache.policy.model import ReuseModel


@pytest.fixture
def history_file(tmp_path):
    path = tmp_path / "history.txt"
    path.write_text(
        "".join(f"{key},{t}\n" for t, key in enumerate(zipf_with_scans(8000)))
    )
    return path


def train(history_file, model, **options) -> str:
    out = StringIO()
    call_command(
        "train_cache_model",
        str(history_file),
        capacity=40,
        output=str(model),
        stdout=out,
        **options,
    )
    return out.getvalue()


def test_trains_reports_and_writes_the_model(history_file, tmp_path):
    model = tmp_path / "model.json"
    text = train(history_file, model)
    assert "roc_auc" in text and "replay of the held-out part" in text
    assert ReuseModel.load(model).meta["capacity"] == 40


def test_dry_run_writes_nothing_and_json_reports(history_file, tmp_path):
    model = tmp_path / "model.json"
    report = json.loads(train(history_file, model, dry_run=True, json=True))
    assert not model.exists()
    assert report["capacity"] == 40 and "heuristic_hit_ratio" in report["replay"]


def test_missing_or_useless_history_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("train_cache_model", str(tmp_path / "nope"), capacity=10)
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a,1\nb,2\n")
    with pytest.raises(CommandError):
        call_command("train_cache_model", str(tiny), capacity=1)
