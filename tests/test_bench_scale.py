"""`make bench-scale` (issue 16) at a tiny size: the harness runs through the command line on a
local disk and on moto's S3 server, and its section carries every figure."""

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

NUMBER = r"-?\d+(\.\d+)?"


def test_the_scale_benchmark_reports_every_figure_for_disk_and_s3(tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n\nkept\n")
    result = subprocess.run([sys.executable, "-m", "bench.scale", "--sizes", "6", "--s3-sizes", "4", "--reps", "1",
                             "--out", str(tmp_path / "out"), "--markdown", str(markdown)],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = markdown.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and text.count("<!-- bench.scale: start -->") == 1
    assert "python -m bench.scale --sizes 6 --s3-sizes 4 --reps 1" in text

    # One row a size: N, videos/s, overhead, rerun (beyond start-up), status (beyond start-up),
    # Dataset init, files, kB, RSS x3, and on S3 the requests of a rerun and of Dataset init.
    figures = rf" \| ({NUMBER}) \| ({NUMBER}) \| ({NUMBER}) \(({NUMBER})\) \| ({NUMBER}) \(({NUMBER})\) \| ({NUMBER}) \| ({NUMBER}) \| ({NUMBER}) \| " \
              rf"({NUMBER}) / ({NUMBER}) / ({NUMBER}) \| "
    disk = re.search(r"\| disk \| 6" + figures + r"- \|", text)
    s3 = re.search(r"\| s3 \| 4" + figures + r"(\d+) / (\d+) \|", text)
    assert disk and s3, text
    summary = {r["backend"]: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())["results"]}
    for row, n in ((disk, 6), (s3, 4)):
        backend = row.group(0).split("|")[1].strip()
        measured = summary[backend]
        assert measured["done"] == n, measured
        assert float(row.group(1)) > 0 and measured["stage_s"] > 0
        # Files a video: 5 for a `deepfakebench` video, plus its share of the store's own few.
        assert 5 <= float(row.group(15)) < 8 and float(row.group(17)) > 100
        assert all(float(row.group(i)) > 50 for i in (19, 21, 23)), row.group(0)  # peak RSS, MB
    # The no-op rerun and the Dataset read at least the store's root and index.
    assert int(s3.group(25)) >= 2 and int(s3.group(26)) >= 2
    assert re.search(rf"\| disk \| {NUMBER} h \| {NUMBER} min \| {NUMBER} min \| {NUMBER} min \| {NUMBER} M \| {NUMBER} GB \| - \|", text)
    assert re.search(rf"\| s3 \| {NUMBER} h \| {NUMBER} min \| {NUMBER} min \| {NUMBER} min \| {NUMBER} M \| {NUMBER} GB \| {NUMBER} k / {NUMBER} k \|", text)
