"""The CLI's choices: --help shows their values, a value outside them is refused before anything runs,
and the CLI's spellings stay those of the library types they stand for (the CLI spells them itself so
that ``--help`` imports neither pycolmap nor torch)."""

from __future__ import annotations

import typing

from typer.testing import CliRunner

from nerfpipe import cli, colmap
from nerfpipe.cameras.scene_type import SCENE_KINDS, SceneKind
from nerfpipe.nerf.interface import LossKind
from nerfpipe.stages import poses


def test_the_cli_choices_are_the_library_types():
    assert typing.get_args(cli.MatcherChoice) == typing.get_args(poses.Matcher)
    assert typing.get_args(cli.LossChoice) == typing.get_args(LossKind)
    assert [c.replace("-", "_") for c in typing.get_args(cli.CameraChoice)] == list(typing.get_args(colmap.CameraMode))
    assert typing.get_args(SceneKind) == SCENE_KINDS
    assert typing.get_args(cli.SceneChoice) == typing.get_args(SceneKind)


def test_help_shows_the_values_and_a_wrong_one_is_refused(tmp_path):
    runner = CliRunner()
    shown = runner.invoke(cli.app, ["poses", "--help"], env={"COLUMNS": "200"}).output
    assert "<single|per-image>" in shown and "<auto|exhaustive|sequential>" in shown
    shown = runner.invoke(cli.app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "<forward|arc|360>" in shown and "<mse|smooth_l1|l1>" in shown and "<auto|cpu|cuda[:N]|mps>" in shown
    refused = runner.invoke(cli.app, ["train", str(tmp_path), "--scene-type", "sideways"], env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "'sideways' is not one of 'forward', 'arc', '360'" in refused.output
    assert "Traceback" not in refused.output and list(tmp_path.iterdir()) == []

