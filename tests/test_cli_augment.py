"""``--augment`` on ``pantailor run`` / ``batch``: the fit's patch augmentation reaches the fit,
is part of the run's identity only when given, and is named in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.cli._base import AUGMENT_CHOICES
from pipeline.fit_config import AUGMENTS
from tests.test_run_integrity import write_pair


def test_the_cli_choices_are_the_fits_augmentations() -> None:
    assert tuple(AUGMENTS) == AUGMENT_CHOICES


def dry_run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main([*argv, "--dry-run", "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return out


def test_augment_is_part_of_the_runs_identity_only_when_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pan, ms = write_pair(tmp_path)
    argv = ["run", str(pan), str(ms), "--sensor", "qb", "-o", str(tmp_path / "o.tif")]
    plain = dry_run(capsys, argv)
    again = dry_run(capsys, argv)
    rot = dry_run(capsys, [*argv, "--augment", "rot180"])
    flips = dry_run(capsys, [*argv, "--augment", "flips"])
    arrays = [r["outputs"]["array"] for r in (plain, again, rot, flips)]  # type: ignore[index]
    assert arrays[0] == arrays[1]
    assert len({arrays[0], arrays[2], arrays[3]}) == 3


def test_an_unknown_augmentation_is_refused_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pan, ms = write_pair(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["run", str(pan), str(ms), "--sensor", "qb", "-o", str(tmp_path / "o.tif"),
              "--augment", "rot90"])  # fmt: skip
    assert exc.value.code == 2
    assert "--augment" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_with_augment_fits_on_it_and_the_report_names_it(tmp_path: Path) -> None:
    pan, ms = write_pair(tmp_path)
    out = tmp_path / "o.tif"
    argv = ["run", str(pan), str(ms), "--sensor", "qb", "-o", str(out), "--workers", "1",
            "--steps", "3"]  # fmt: skip
    assert main([*argv, "--augment", "rot180"]) == 0
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["fit"]["augment"] == "rot180"
    assert report["fit"]["steps"] >= 1


def test_batch_passes_augment_to_every_scenes_fit(tmp_path: Path) -> None:
    from pipeline.batch.plan import run_config
    from pipeline.batch.sources import SceneSpec
    from pipeline.cli import build_parser
    from pipeline.cli.batch import _config

    pan, ms = write_pair(tmp_path)
    args = build_parser().parse_args(
        ["batch", "m.csv", "-o", str(tmp_path), "--sensor", "qb", "--augment", "d4", "--steps", "5"]
    )
    run = run_config(
        SceneSpec(id="s", inputs=(str(pan), str(ms))), _config(args), tmp_path / "s.tif"
    )
    assert dict(run.fit) == {"steps": 5, "augment": "d4"}
