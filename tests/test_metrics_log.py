"""metrics.jsonl as power loss and overflow leave it: a torn last line, non-finite values."""

import json
import logging
import math

import pytest

from ftjax.config_validation import ConfigError
from ftjax.metrics_writer import MetricsWriter, read_metrics


def _write_records(workdir, records):
  writer = MetricsWriter(str(workdir), enabled=True)
  for record in records:
    writer.write(record["step"], {k: v for k, v in record.items() if k != "step"})
  writer.close()


RECORDS = [{"step": 5, "train/loss": 0.5}, {"step": 10, "train/loss": 0.25}, {"step": 15, "train/loss": 0.125}]


def test_a_torn_last_line_is_dropped_with_a_warning_and_truncation_repairs_the_file(tmp_path, caplog):
  _write_records(tmp_path, RECORDS)
  path = tmp_path / "metrics.jsonl"
  whole = path.read_bytes()
  torn = whole[: len(whole) - 7]  # the last record cut mid-number
  path.write_bytes(torn)
  with caplog.at_level(logging.WARNING, logger="ftjax.metrics_writer"):
    assert read_metrics(str(tmp_path)) == RECORDS[:2]
  assert len([r for r in caplog.records if "torn last line 3" in r.getMessage()]) == 1
  MetricsWriter(str(tmp_path), enabled=True).truncate_after(10)
  expected = "".join(json.dumps(r) + "\n" for r in RECORDS[:2]).encode()
  assert path.read_bytes() == expected == whole[: len(expected)]


def test_a_damaged_line_before_the_last_is_one_line_error(tmp_path):
  _write_records(tmp_path, RECORDS)
  path = tmp_path / "metrics.jsonl"
  lines = path.read_text().splitlines(keepends=True)
  path.write_text(lines[0] + "{ garbage\n" + lines[2])
  with pytest.raises(ConfigError) as error:
    read_metrics(str(tmp_path))
  assert "metrics.jsonl line 2 is not a metrics record" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_values_are_written_as_null_with_a_warning_naming_the_step(tmp_path, caplog, value):
  with caplog.at_level(logging.WARNING, logger="ftjax.metrics_writer"):
    _write_records(tmp_path, [{"step": 7, "train/loss": 0.5, "distance/x": value}])
  line = (tmp_path / "metrics.jsonl").read_text()
  assert json.loads(line) == {"step": 7, "train/loss": 0.5, "distance/x": None}
  assert "Infinity" not in line and "NaN" not in line
  warnings = [r.getMessage() for r in caplog.records if r.name == "ftjax.metrics_writer"]
  assert len(warnings) == 1 and warnings[0].startswith("step 7: distance/x non-finite")
