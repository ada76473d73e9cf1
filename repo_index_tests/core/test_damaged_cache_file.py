"""A damaged cache file is moved aside once, however many processes open it together, and
also when the damage is found in use (the next opening checks it); a sound file marked
suspect is kept."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from repo_index.core.embed.cache import VectorCache, text_key
from repo_index.core.embed.cache.damaged import CacheDamaged

# Every opener blocks opening the FIFO until the test opens it for writing: they start together.
OPENER = """
import os, sys
from repo_index.core.embed.cache import VectorCache
os.close(os.open(sys.argv[2], os.O_RDONLY))
with VectorCache(sys.argv[1]) as cache:
    print(cache.count())
"""
OPENERS = 6


def _filled(path: Path, n: int = 200) -> None:
    with VectorCache(path) as cache:
        cache.put_many("m", 256, [(text_key(str(i)), np.full(256, i, dtype=np.float32)) for i in range(n)])


@pytest.mark.parametrize("how", ["half_truncated", "garbage"])
def test_processes_opening_a_damaged_cache_together_move_it_aside_once(tmp_path, how):
    cache = tmp_path / "embeddings.sqlite"
    _filled(cache)
    size = cache.stat().st_size
    if how == "half_truncated":
        with open(cache, "r+b") as f:
            f.truncate(size // 2)
    else:
        cache.write_bytes(b"\x5a" * size)
    go = tmp_path / "go"
    os.mkfifo(go)
    openers = [subprocess.Popen([sys.executable, "-c", OPENER, str(cache), str(go)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(OPENERS)]
    time.sleep(3)  # every process imported and waiting at the FIFO
    os.close(os.open(go, os.O_WRONLY))
    results = [p.communicate(timeout=120) for p in openers]
    assert [p.returncode for p in openers] == [0] * OPENERS, results
    assert [out.strip() for out, _ in results] == ["0"] * OPENERS  # each opened the new, empty cache
    aside = sorted(p.name for p in tmp_path.glob("embeddings.sqlite.corrupt-*"))
    assert len(aside) == 1, aside
    messages = [err for _, err in results if "is damaged" in err]
    assert len(messages) == 1 and f"moved aside to {aside[0]}" in messages[0]
    with VectorCache(cache) as fresh:  # the new file is sound and takes vectors
        fresh.put_many("m", 4, [(text_key("x"), np.ones(4, dtype=np.float32))])
        assert fresh.count() == 1


def test_damage_found_in_use_is_said_and_the_next_opening_moves_the_file_aside(tmp_path):
    cache = tmp_path / "embeddings.sqlite"
    _filled(cache)
    data = bytearray(cache.read_bytes())
    page = 32768  # the first page (header and schema) stays whole: the file opens
    data[page:] = b"\x5a" * (len(data) - page)
    cache.write_bytes(bytes(data))
    with VectorCache(cache) as damaged:
        with pytest.raises(CacheDamaged, match=r"embeddings.sqlite is damaged \(database disk image is malformed\)"
                                               r": re-run, the next run checks it"):
            damaged.present("m", 256, [text_key(str(i)) for i in range(200)])
    with VectorCache(cache) as fresh:
        assert fresh.count() == 0
    assert len(list(tmp_path.glob("embeddings.sqlite.corrupt-*"))) == 1
    assert not list(tmp_path.glob("*.suspect"))


def test_a_sound_file_marked_suspect_is_checked_and_kept(tmp_path):
    cache = tmp_path / "embeddings.sqlite"
    _filled(cache)
    (tmp_path / "embeddings.sqlite.suspect").write_text("database disk image is malformed\n")
    with VectorCache(cache) as kept:
        assert kept.count() == 200
    assert not list(tmp_path.glob("embeddings.sqlite.corrupt-*")) and not list(tmp_path.glob("*.suspect"))
