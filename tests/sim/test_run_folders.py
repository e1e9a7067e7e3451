"""Run folders under the cache are pruned: the newest are kept, and nothing younger than an hour goes."""

from __future__ import annotations

import os
import time

from trainforge.sim.harness import _prune_runs


def test_prune_keeps_newest_and_recent(tmp_path):
    now = time.time()
    for i in range(6):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        age = 7200 + i * 60 if i < 4 else 60  # run0-3 are two hours old, run4-5 a minute
        os.utime(folder, (now - age, now - age))
    _prune_runs(tmp_path, keep=3)
    # newest three by time: run4, run5 (recent) and run0 (the youngest of the old ones); run1-3 go
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run0", "run4", "run5"]
    _prune_runs(tmp_path, keep=0)
    # with nothing to keep, still only folders older than an hour are removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run4", "run5"]
