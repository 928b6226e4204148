"""The `mtdiff` command: its list, each command's help with the config fields it reads,
--print-config, and Ctrl-C as one line with exit 130."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtdiff.commands import COMMANDS, INTERRUPTED, SWEEPS, guarded, main


def test_lists_every_command_and_refuses_unknown_ones(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*COMMANDS, *SWEEPS]:
        assert name in out
    assert main(["trian"]) == 2
    assert "mtdiff --help" in capsys.readouterr().err
    assert main(["sweep", "nope"]) == 2


def test_train_help_lists_the_fields_it_reads_with_their_comments(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mtdiff train" in out
    assert 'train.loss = "huber"' in out and "Huber on" in out  # the field and its comment
    assert "train.compile" in out and "model.d_model" in out
    assert "eval.episodes" not in out  # not a training field
    # Each method's own section, with comments from its file (and its bases').
    assert "methods.mtiql.beta = 3.0" in out and "inverse temperature of the" in out
    assert "methods.mttd3bc.policy_delay = 2" in out and "CORL: 256" in out


def test_print_config_shows_the_resolved_config(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "x", "--out", "y", "--preset", "smoke", "--model", "mtbc",
              "--set", "train.lr=0.001", "--print-config"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert 'preset = "smoke"' in lines and "train.lr = 0.001" in lines
    assert 'model.kind = "mtbc"' in lines and "methods.mtbc.hidden = 64" in lines


def test_bad_override_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "x", "--out", "y", "--set", "train.nope=1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert guarded(interrupted) == INTERRUPTED
    assert capsys.readouterr().err.strip() == "interrupted; rerun the same command to resume"


def test_installed_entry_point_runs():
    r = subprocess.run([sys.executable, "-c", "from mtdiff.commands import main; "
                        "raise SystemExit(main(['sweep', '--help']))"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "budget-curve" in r.stdout
