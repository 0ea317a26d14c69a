"""The `w2vbert` command line: exit codes, one-line errors, and each subcommand on tiny local models."""

from __future__ import annotations

import subprocess
import sys

from w2vbert import Wav2Vec2BertConfig
from w2vbert.cli import main


def test_info_summarises_a_checkpoint_from_its_config_alone(tmp_path, capsys):
    # The full-size CTC config: the parameter count needs no weights file (built on the meta device).
    Wav2Vec2BertConfig(architectures=["Wav2Vec2BertForCTC"], vocab_size=40).save_pretrained(tmp_path)
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Wav2Vec2BertForCTC" in out and "vocab_size" in out
    assert f"{580_493_120 + 40 * 1024 + 40:,}" in out  # base model + lm_head (weight and bias)


def test_errors_are_one_line_on_stderr_with_exit_code_1(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing-model")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("w2vbert: error:") and "missing-model" in err[0]


def test_python_dash_m_runs_the_same_command_line_and_bad_usage_exits_2():
    done = subprocess.run([sys.executable, "-m", "w2vbert", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("w2vbert ")
    done = subprocess.run([sys.executable, "-m", "w2vbert", "no-such-command"], capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice" in done.stderr
