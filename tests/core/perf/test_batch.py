"""`gemini-cmr batch`: bad studies reported without stopping, resume, sharding."""

from __future__ import annotations

import json

import pytest

from gemini_cmr.cli import batch
from gemini_cmr.cli.main import main
from gemini_cmr.core.errors import GeminiError
from tests.toy_data import write_phantom


@pytest.fixture
def cohort(tmp_path):
    good = [write_phantom(tmp_path / f"s{i}.nii.gz", 2, 4, 24, seed=i) for i in range(2)]
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(good[0].read_bytes()[:200])  # truncated gzip
    lst = tmp_path / "list.txt"
    lst.write_text(f"# cohort\n{good[0]}\n\nbroken.nii.gz\n{good[1]}\n")
    return lst, good, bad


def test_batch_skips_bad_and_resumes(cohort, tmp_path, capsys):
    lst, good, bad = cohort
    out = tmp_path / "out"
    rc = main(["batch", str(lst), "--out", str(out), "--device", "cpu", "--quiet"])
    assert rc == 1  # one study failed, the others were processed
    summary = json.loads((out / "batch_summary.json").read_text())
    status = {r["study"]: r for r in summary["studies"]}
    assert status[str(good[0])]["status"] == "ok" and status[str(good[1])]["status"] == "ok"
    failed = status[str(bad)]
    assert failed["status"] == "failed" and failed["reason"] and "\n" not in failed["reason"]
    assert summary["counts"] == {"ok": 2, "failed": 1, "skipped": 0}
    assert (out / "batch_summary.csv").read_text().count("\n") == 4
    for name in ("s0", "s1"):
        assert batch.is_complete(out / name)
        assert (out / name / "sr_labels.nii.gz").is_file()
    assert not (out / "broken").exists()
    capsys.readouterr()

    # Resume: the finished studies are skipped, the bad one is tried again.
    rc = main(["batch", str(lst), "--out", str(out), "--device", "cpu", "--quiet"])
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["counts"] == {"ok": 0, "failed": 1, "skipped": 2}
    assert "1 failed, 2 skipped" in capsys.readouterr().out


def test_input_list_folder_and_names(tmp_path):
    for n in ("b.nii.gz", "a.nii", "c.zip", "notes.txt", ".hidden.nii.gz"):
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "patient001").mkdir()
    found = batch.read_input_list(tmp_path)
    assert [p.name for p in found] == ["a.nii", "b.nii.gz", "c.zip", "patient001"]
    # names come from the path (relative to the common folder), not from the list order (with list-order
    # names, "s", "s-2", "p_q", a resumed batch on another list would file one study under another's name)
    studies = [tmp_path / "x" / "s.nii.gz", tmp_path / "y" / "s.nii", tmp_path / "p q"]
    names = batch.output_names(studies)
    assert names == ["x_s", "y_s", "p_q"]
    assert batch.output_names(studies[::-1]) == names[::-1]
    twins = batch.output_names([tmp_path / "s.nii.gz", tmp_path / "s.nii"], root=tmp_path)
    assert twins[0] != twins[1] and all(n.startswith("s-") for n in twins)
    assert batch.output_names([tmp_path / "s.nii", tmp_path / "s.nii.gz"], root=tmp_path) == twins[::-1]
    with pytest.raises(GeminiError):
        batch.read_input_list(tmp_path / "missing.txt")


def test_sharding_split(monkeypatch):
    items = list(range(10))
    parts = [batch.shard(items, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(parts, [])) == items
    assert batch.shard(items, 0, 1) == items
    with pytest.raises(GeminiError):
        batch.shard(items, 3, 3)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert batch.rank_and_world() == (1, 4)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert batch.rank_and_world() == (0, 1)


def test_batch_shard_rank_processes_its_share(cohort, tmp_path, monkeypatch, capsys):
    lst, good, bad = cohort
    out = tmp_path / "out"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    rc = main(["batch", str(lst), "--out", str(out), "--device", "cpu", "--quiet"])
    assert rc == 1  # rank 1 of 2 gets the second study of the list: the broken one
    summary = json.loads((out / "batch_summary.rank1.json").read_text())
    assert [r["study"] for r in summary["studies"]] == [str(bad)]
    assert not (out / "s0").exists() and not (out / "s1").exists()
    assert "rank 1/2" in capsys.readouterr().out


def test_shard_device_spreads_ranks_over_the_gpus(monkeypatch):
    """torchrun on a GPU node: each process takes the GPU of its LOCAL_RANK (modulo the visible GPUs);
    one process, the CPU, or no CUDA: the device as given."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert batch.shard_device("cuda", 5, 8) == "cuda:1"
    assert batch.shard_device("auto", 5, 8) == "cuda:1"
    monkeypatch.delenv("LOCAL_RANK")
    assert batch.shard_device("cuda", 2, 8) == "cuda:2"  # no LOCAL_RANK: the rank
    assert batch.shard_device("cpu", 2, 8) == "cpu"
    assert batch.shard_device("cuda", 0, 1) == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(GeminiError, match="LOCAL_RANK"):
        batch.shard_device("cuda", 1, 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert batch.shard_device("auto", 1, 2) == "auto"


@pytest.mark.parametrize("world", [2, 3, 5])
def test_shards_neither_overlap_nor_miss_a_study(tmp_path, world):
    """Each torchrun process lists the cohort on its own (a folder, here with the outputs folder inside it,
    made by a rank that started first): the shards of all ranks are disjoint and cover every study once,
    with the same output name in every process."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    for i in range(6):
        (folder / f"s{i}.nii.gz").write_bytes(b"x")
    (folder / "dicom_study").mkdir()  # a folder is a study too (a DICOM series)
    out = folder / "out"
    views = []
    for rank in range(world):
        studies = [p for p in batch.read_input_list(folder) if p.resolve() != out.resolve()]
        names = batch.output_names(studies, batch.list_root(folder))
        views.append(batch.shard(list(zip(studies, names)), rank, world))
        out.mkdir(exist_ok=True)  # the first rank makes it: the later ranks list the folder with it inside
        (out / f"batch_summary.rank{rank}.json").write_text("{}")
    taken = [s for view in views for s, _ in view]
    assert len(taken) == len(set(taken)) == 7  # no study twice, none missed
    assert sorted(taken) == sorted([folder / "dicom_study"] + [folder / f"s{i}.nii.gz" for i in range(6)])
    names = {s: n for view in views for s, n in view}
    assert len(set(names.values())) == 7


def test_batch_ranks_together_process_every_study_once(tmp_path, monkeypatch, capsys):
    """Two ranks run one after the other as torchrun would run them side by side: every study is done by
    exactly one rank, and their summaries together list each study once."""
    studies = [write_phantom(tmp_path / f"s{i}.nii.gz", 2, 4, 24, seed=i) for i in range(3)]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(str(p) for p in studies) + "\n")
    out = tmp_path / "out"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert main(["batch", str(lst), "--out", str(out), "--device", "cpu", "--quiet", "--no-dicom"]) == 0
    rows = [r for rank in (0, 1)
            for r in json.loads((out / f"batch_summary.rank{rank}.json").read_text())["studies"]]
    assert sorted(r["study"] for r in rows) == sorted(str(p) for p in studies)
    assert all(r["status"] == "ok" for r in rows)
    assert all(batch.is_complete(out / p.name.removesuffix(".nii.gz")) for p in studies)
