"""``trainforge cosim train-step``: user mistakes are one error line and exit code 2, before any simulation."""

from __future__ import annotations

import pytest

from trainforge.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet"], "unknown model 'resnet'; valid: mlp, cnn"),
        (["--method", "transposable"], "unknown method 'transposable'; valid: dense, srste, bdwp"),
        (["--nm", "4:4"], "--nm 4:4: need 1 <= n < m"),
        (["--nm", "3:2"], "--nm 3:2: need 1 <= n < m"),
        (["--nm", "1:3"], "--nm 1:3: m must divide m_max = 8 of the tiny preset"),
        (["--nm", "2:16"], "--nm 2:16: m must divide m_max = 8 of the tiny preset"),
        (["--nm", "two:four"], "--nm must look like N:M (e.g. 2:4), not 'two:four'"),
        (["--steps", "0"], "--steps must be >= 1, not 0"),
        (["--batch", "0"], "--batch must be in 1..256, not 0"),
        (["--seed", "-1"], "--seed must be >= 0, not -1"),
        (["--preset", "huge"], "unknown preset 'huge'"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(["cosim", "train-step", *args, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"trainforge: error: {message}"), lines[0]


def test_help_lists_the_command():
    assert main(["cosim", "--help"]) == 0
