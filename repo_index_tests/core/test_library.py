"""The library entry points, as users of the system this project grew from call them."""

import pandas as pd

from repo_index.core.chunk.repository import chunk_repository


def test_chunk_repository_in_processes_or_in_process_gives_the_same_table(tmp_path, caplog):
    for i in range(220):  # over two shards' worth of files
        path = tmp_path / f"pkg{i % 4}" / f"mod_{i}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"def handler_{i}(request):\n    return request.get({i})\n")
    with caplog.at_level("INFO", logger="repo_index.core.chunk.repository"):
        parallel = chunk_repository(tmp_path, max_tokens=128, max_workers=2)
        assert "220 files in 3 shard(s) over 2 worker processes" in caplog.text
        caplog.clear()
        serial = chunk_repository(tmp_path, max_tokens=128, parallel=False)
        assert "in this process" in caplog.text
    assert len(serial) == 220 and set(serial["symbol"]) == {f"handler_{i}" for i in range(220)}
    pd.testing.assert_frame_equal(parallel, serial)
