"""`ipprompt calibrate`: rank agreement maths, profile placement of rungs, and the command on the tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli
from ipprompt.dvp.agreement import rank_agreement, ranks, spearman
from ipprompt.dvp.profiles import AgreementRow, Profile, rungs_from_profile


def test_ranks_share_ties_and_spearman_matches_hand_values() -> None:
    assert ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # With ties: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): Pearson of ranks = 0.9486833
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)
    assert spearman([1, 1, 1], [1, 2, 3]) is None, "no spread: undefined, not 0"


def test_top_hits_and_regret() -> None:
    got = rank_agreement(preview=[0.3, 0.9, 0.5], final=[0.2, 0.25, 0.4])
    assert got["top1"] == 0.0 and got["top2"] == 1.0  # best final (#2) is the second-best preview
    assert got["regret"] == pytest.approx(0.4 - 0.25)
    assert rank_agreement([1, 2], [1, 2]) == {"spearman": pytest.approx(1.0), "top1": 1.0, "top2": 1.0, "regret": 0.0}


def _profile(rows: list[tuple[float, float | None, float | None]], tmp_path: Path) -> Profile:
    return Profile({}, tuple(AgreementRow(s, i + 1, rho, top1, top1, 0.0, 2) for i, (s, rho, top1) in enumerate(rows)), tmp_path / "p.json")


def test_profile_moves_the_first_rung_where_agreement_holds(tmp_path: Path) -> None:
    defaults = (0.95, 0.85)
    # Agreement >= 0.9 from 0.98 down: the first rung may go above 0.95, and top-1 at the last rung allows one finish.
    early = _profile([(0.99, 0.5, 0.0), (0.98, 0.92, 0.5), (0.95, 0.95, 1.0), (0.85, 0.97, 1.0)], tmp_path)
    assert rungs_from_profile(early, defaults, 2)[:2] == ((0.98, 0.95, 0.85), 1)
    # Agreement only from 0.85: judge later than the default, finish 2.
    late = _profile([(0.98, 0.2, 0.0), (0.95, 0.6, 0.0), (0.85, 0.93, 0.5), (0.70, 0.95, 0.5)], tmp_path)
    assert rungs_from_profile(late, defaults, 2)[:2] == ((0.85,), 2)
    # A dip breaks the run of agreement: only the part below it counts.
    dip = _profile([(0.98, 0.95, 1.0), (0.95, 0.5, 0.0), (0.85, 0.91, 1.0)], tmp_path)
    assert rungs_from_profile(dip, defaults, 2)[0] == (0.85,)
    none = _profile([(0.95, 0.3, 0.0), (0.85, None, None)], tmp_path)
    targets, finish, source = rungs_from_profile(none, defaults, 2)
    assert (targets, finish) == (defaults, 2) and "default rungs" in source


@pytest.mark.slow
def test_calibrate_writes_profile_and_report_and_the_dry_run_uses_it(
    example_copy: Path, tiny_flux_dir: Path, tiny_clip_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common = ["--model", str(tiny_flux_dir), "--tile", "256", "--steps", "6", "--candidates", "3"]
    report = tmp_path / "report" / "calibration.html"
    r = run_cli(capsys, "calibrate", str(example_copy), "--panels", "1-2", *common, "--encoder", str(tiny_clip_dir),
                "--device", "cpu", "--report", str(report))
    assert r.exit_code == 0, r.output
    html = report.read_text()
    assert "<svg" in html and "<polyline" in html and "spearman" in html and "<script" not in html
    data = json.loads(report.with_suffix(".json").read_text())
    assert len(data["profiles"]) == 2  # panel 1 is wide, panel 2 square: one profile per canvas
    for profile in data["profiles"]:
        assert Path(profile["path"]).is_file() and profile["key"]["steps"] == 6
        for row in profile["rows"]:
            assert {"sigma", "step", "spearman", "top1", "top2", "regret"} <= set(row) and row["panels"] == 1
            assert row["regret"] >= 0 and 0 < row["sigma"] < 1
    assert [len(p["final"]) for p in data["panels"]] == [3, 3]
    dry = run_cli(capsys, "story", "run", str(example_copy), "--dry-run", "--panels", "1-2", *common, "--device", "cpu")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.count("from the profile") == 2, dry.stdout
    off = run_cli(capsys, "story", "run", str(example_copy), "--dry-run", "--panels", "1-2", *common, "--device", "cpu", "--calibration", "off")
    assert "from the profile" not in off.stdout and "from the default (budget balanced)" in off.stdout
