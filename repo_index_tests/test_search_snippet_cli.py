"""`repo-index search` shows the lines of a hit that match the query, numbered as in the file."""

import pytest

from repo_index_tests.gitutil import make_repo
from repo_index_tests.pipeline import BIN, index_in_process, project_env, run

METHODS = "\n".join(f"    def step_{i}(self, item):\n        return self.items.append(item * {i})\n" for i in range(8))
STORE = ("# left over from the section above\n\nclass Store:\n    def __init__(self):\n        self.items = []\n\n"
         + METHODS + "\n    def rotate_logs(self, keep=3):\n        # drop all but the newest files\x0c\n"
         "        self.logs = self.logs[-keep:]\n        return len(self.logs)\n")
# A form feed (a page break in older sources) ends a line for str.splitlines, not in the file.


@pytest.mark.slow
def test_search_prints_the_matching_method_with_its_file_line_numbers(tmp_path, openai_server):
    env = project_env(tmp_path, openai_server.base_url)
    index_in_process(env, "svc", make_repo(tmp_path / "svc", {"store.py": STORE}))
    lines = STORE.split("\n")
    rotate = lines.index("    def rotate_logs(self, keep=3):") + 1

    out = run([BIN / "repo-index", "search", "rotate the logs", "--repo", "svc", "-k", "1"], env).stdout
    head, *shown = [ln for ln in out.split("\n") if ln.strip()]
    assert head.startswith("store.py:1-") and "Store" in head  # one chunk: the whole class
    numbered = [ln.split(None, 1) for ln in shown]
    assert numbered[0] == [str(rotate), lines[rotate - 1].strip()], out
    assert len(numbered) == 4
    for number, text in numbered:  # each line is the file's line of that number
        assert lines[int(number) - 1].strip() == text.strip(), out
    assert len(shown) <= 4 and "left over" not in out
