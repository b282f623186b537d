"""`gemini-cmr train vama` (the sub-subcommand module; `cli/train.py` registers it)."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest

from gemini_cmr.cli import train_vama
from gemini_cmr.core.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")



def _parse(argv):
    parser = argparse.ArgumentParser(prog="gemini-cmr train")
    train_vama.register(parser.add_subparsers(dest="what"))
    return parser.parse_args(argv)


def _argv(domains, out, *extra):
    return ["vama", "--source", str(domains[0]), "--target", str(domains[1]), "--out", str(out),
            "--max-steps", "2", "--steps-per-epoch", "2", "--batch-size", "4", "--crop", "24",
            "--device", "cpu", "--no-measure", *extra]


def test_progress_json_lines_and_resume(domains, tmp_path, capsys):
    args = _parse(_argv(domains, tmp_path / "run", "--progress-json", "--seed", "3"))
    assert args.func is train_vama.run
    assert args.func(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(e["kind"] == "vama" for e in lines)
    assert lines[-1]["event"] == "done" and (tmp_path / "run" / "adapter.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["training"]["seed"] == 3
    # finished run: --resume has nothing left to do and rewrites the same adapter
    args = _parse(_argv(domains, tmp_path / "run", "--progress-json", "--seed", "3", "--resume"))
    assert args.func(args) == 0
    events = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert "resume" in events and events[-1] == "done"


def test_bad_arguments_are_user_errors(domains, tmp_path):
    args = _parse(_argv(domains, tmp_path / "run") + ["--crop", "8"])
    with pytest.raises(DataError, match="crop"):
        args.func(args)


@pytest.mark.skipif(importlib.util.find_spec("gemini_cmr.cli.train") is None, reason="cli/train.py not present")
def test_through_the_main_entry_point(domains, tmp_path, capsys):
    from gemini_cmr.cli.main import main

    assert main(["train", *_argv(domains, tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "adapter.safetensors").is_file()
    assert main(["train", "vama", "--source", str(tmp_path / "nope"), "--target", str(domains[1]),
                 "--out", str(tmp_path / "r2")]) == 2
    assert "nope" in capsys.readouterr().err
