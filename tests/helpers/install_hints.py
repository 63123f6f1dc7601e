"""A missing optional dependency is one line on stderr naming the asyncrl extra to install."""

from pathlib import Path

from asyncrl import train


def assert_train_names_extra(env: str, extra: str, tmp_path: Path, capsys) -> None:
    """`python -m asyncrl.train --env=<env>` exits 2 with one line that says
    pip install 'asyncrl[<extra>]', and creates no experiment folder."""
    code = train.main([f"--env={env}", f"--train_dir={tmp_path}", "--experiment=exp"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"pip install 'asyncrl[{extra}]'" in err, err
    assert not (tmp_path / "exp").exists()
