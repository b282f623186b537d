"""`core.vama.domains.check_vama_data`: the pre-training checks as (name, ok, problem) rows (training wizard)."""

from __future__ import annotations

from gemini_cmr.core.vama.domains import check_vama_data


def test_rows_for_good_and_bad_domains(domains, tmp_path):
    src, tgt = domains
    rows = check_vama_data(src, tgt)
    assert [r[0] for r in rows] == [f"source/source-{i:02d}" for i in range(4)] + [
        f"target/sub-{i:03d}" for i in range(4)] + ["source + target"]
    assert all(ok for _, ok, _ in rows)

    rows = check_vama_data(src, src)  # the same folder twice
    assert rows[-1][0] == "source + target" and not rows[-1][1] and "same folder" in rows[-1][2]

    rows = check_vama_data(tmp_path / "missing", tgt)
    assert rows[0] == ("source folder", False, rows[0][2]) and "not found" in rows[0][2]
    assert rows[-1][0].startswith("target/")  # no pair check without both domains

    rows = check_vama_data(src, tgt, min_slices=100)  # 4 studies x 2 phases x 6 slices = 48
    assert not rows[-1][1] and "48 source slices" in rows[-1][2] and "at least 100" in rows[-1][2]
