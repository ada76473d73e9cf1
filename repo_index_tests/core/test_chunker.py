from __future__ import annotations

import hashlib
import os
import random
import string
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repo_index.core.chunk.chunker import chunk_source
from repo_index.core.chunk.records import (
    FRAME_COLUMNS,
    MIN_MAX_TOKENS,
    Chunk,
    chunk_ids,
    chunks_frame,
    content_hash,
    embedding_text,
)
from repo_index.core.chunk.languages import detect_language, get_spec
from repo_index.core.chunk.tokens import count_tokens, get_encoding
from repo_index_tests.core.invariants import check_chunks, check_syntax_boundaries

ENC = get_encoding("cl100k_base")
DATA = Path(__file__).parent / "data"
STDLIB = Path(os.__file__).parent
BUDGETS = (64, 200, 512)
PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def chunk(src: str, language: str, max_tokens: int, path: str = "pkg/mod.x") -> list[Chunk]:
    return chunk_source(src, path, language, max_tokens, ENC)


def checked(src: str, language: str, max_tokens: int, syntax: bool = True,
            path: str = "pkg/mod.x") -> list[Chunk]:
    chunks = chunk(src, language, max_tokens, path)
    check_chunks(src, chunks, max_tokens, ENC)
    if syntax and get_spec(language).grammar not in (None, "markdown"):
        check_syntax_boundaries(src, chunks, language, max_tokens, ENC)
    return chunks


# --- generated source ---------------------------------------------------------------

NAMES = st.sampled_from(["alpha", "beta", "gamma", "delta", "value", "item", "result",
                         "count", "total", "config", "handler", "node", "buffer"]).flatmap(
    lambda n: st.integers(0, 99).map(lambda i: f"{n}{i}"))
WORDS = st.lists(st.sampled_from(["the", "cache", "value", "is", "not", "ready", "é", "日本",
                                  "token", "😀", "x" * 40]), min_size=1, max_size=12).map(" ".join)
BUDGET = st.one_of(st.sampled_from(BUDGETS), st.integers(MIN_MAX_TOKENS, 700))


@st.composite
def python_block(draw, indent: int = 0, depth: int = 0) -> str:
    pad = "    " * indent
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 9 if depth < 3 else 5))
        name = draw(NAMES)
        if kind == 0:
            lines.append(f"{pad}{name} = {draw(NAMES)} + {draw(st.integers(0, 10**6))}")
        elif kind == 1:
            lines.append(f"{pad}# {draw(WORDS)}")
        elif kind == 2:
            lines.append(f"{pad}{name}({', '.join(draw(st.lists(NAMES, max_size=8)))})")
        elif kind == 3:
            lines.append(f"{pad}{name} = {draw(WORDS)!r}")
        elif kind == 4:
            lines.append(f'{pad}"""{draw(WORDS)}\n{pad}{draw(WORDS)}\n{pad}"""')
        elif kind == 5:
            items = ", ".join(str(i) for i in range(draw(st.integers(0, 300))))
            lines.append(f"{pad}{name} = [{items}]")
        elif kind in (6, 7):
            deco = f"{pad}@{draw(NAMES)}\n" if draw(st.booleans()) else ""
            args = ", ".join(draw(st.lists(NAMES, max_size=4, unique=True)))
            lines.append(f"{deco}{pad}def {name}({args}):\n"
                         + draw(python_block(indent + 1, depth + 1)))
        elif kind == 8:
            lines.append(f"{pad}class {name.title()}({draw(NAMES)}):\n"
                         + draw(python_block(indent + 1, depth + 1)))
        else:
            lines.append(f"{pad}if {name}:\n" + draw(python_block(indent + 1, depth + 1)))
        lines.extend([""] * draw(st.integers(0, 2)))
    return "\n".join(lines) + "\n"


@st.composite
def js_block(draw, depth: int = 0) -> str:
    sep = draw(st.sampled_from(["\n", "\n\n", " "]))  # " ": minified-ish lines
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 8 if depth < 3 else 4))
        name = draw(NAMES)
        if kind == 0:
            parts.append(f"let {name} = {draw(NAMES)} * {draw(st.integers(0, 999))};")
        elif kind == 1:
            parts.append(f"// {draw(WORDS)}\n" if sep == " " else f"// {draw(WORDS)}")
        elif kind == 2:
            parts.append(f"{name}({', '.join(draw(st.lists(NAMES, max_size=8)))});")
        elif kind == 3:
            parts.append(f"const {name} = {draw(WORDS)!r};")
        elif kind == 4:
            parts.append(f"/* {draw(WORDS)}\n   {draw(WORDS)} */")
        elif kind == 5:
            parts.append(f"function {name}(a, b) {{\n{draw(js_block(depth + 1))}}}")
        elif kind == 6:
            body = draw(js_block(depth + 1))
            parts.append(f"class {name.title()} {{\n  {draw(NAMES)}(x) {{\n{body}}}\n}}")
        elif kind == 7:
            parts.append(f"const {name} = (x) => {{\n{draw(js_block(depth + 1))}}};")
        else:
            parts.append(f"if ({name}) {{ {draw(js_block(depth + 1))} }} else {{ {name}(); }}")
    return sep.join(parts) + "\n"


@PROPERTY
@given(src=python_block(), max_tokens=BUDGET)
def test_property_generated_python(src, max_tokens):
    checked(src, "python", max_tokens)


@PROPERTY
@given(src=js_block(), max_tokens=BUDGET)
def test_property_generated_javascript(src, max_tokens):
    checked(src, "javascript", max_tokens)


@PROPERTY
@given(src=st.text(st.characters(exclude_categories=("Cs",)), max_size=3000),
       language=st.sampled_from(["text", "python", "javascript", "cpp", "yaml", "markdown"]),
       max_tokens=BUDGET)
def test_property_arbitrary_text(src, language, max_tokens):
    # Anything goes through any grammar (ERROR nodes) without losing or duplicating text.
    checked(src, language, max_tokens, syntax=False)


@PROPERTY
@given(lines=st.lists(st.one_of(WORDS, st.just(""), st.text("#{}()[]; \t", max_size=40),
                                st.text(string.ascii_letters, min_size=300, max_size=3000)),
                      max_size=60),
       newline=st.sampled_from(["\n", "\r\n"]),
       language=st.sampled_from(["text", "markdown", "python", "go", "rust"]),
       max_tokens=BUDGET)
def test_property_line_soup(lines, newline, language, max_tokens):
    checked(newline.join(lines), language, max_tokens, syntax=False)


# --- real files ---------------------------------------------------------------------

STDLIB_FILES = ["json/decoder.py", "asyncio/tasks.py", "textwrap.py", "email/feedparser.py",
                "string.py"]
SAMPLES = sorted(p.name for p in DATA.iterdir())


@pytest.mark.parametrize("max_tokens", BUDGETS)
@pytest.mark.parametrize("name", STDLIB_FILES)
def test_stdlib_modules(name, max_tokens):
    src = (STDLIB / name).read_text(encoding="utf-8")
    chunks = checked(src, "python", max_tokens, path=name)
    assert len(chunks) > 1


@pytest.mark.parametrize("max_tokens", (MIN_MAX_TOKENS, *BUDGETS))
@pytest.mark.parametrize("name", SAMPLES)
def test_samples(name, max_tokens):
    src = (DATA / name).read_text(encoding="utf-8")
    language = detect_language(name, src[:256].encode())
    chunks = checked(src, language, max_tokens, path=f"data/{name}")
    assert {c.language for c in chunks} == {language}


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(STDLIB_FILES[:3] + ["sample.cpp", "sample.ts", "sample.rs"]),
       max_tokens=st.integers(MIN_MAX_TOKENS, 700))
def test_property_real_files_any_budget(name, max_tokens):
    path = DATA / name if name.startswith("sample") else STDLIB / name
    src = path.read_text(encoding="utf-8")
    checked(src, detect_language(name), max_tokens, path=name)


# --- breadcrumbs --------------------------------------------------------------------

BODY = ["total = compute(alpha, beta, gamma, delta)"] * 6


def symbols(src: str, language: str, max_tokens: int = 100) -> list[str]:
    return [c.symbol for c in checked(src, language, max_tokens, path="m")]


def named(src: str, language: str, *signatures: str, max_tokens: int = 100) -> list[str]:
    """The symbol of the chunk holding each signature."""
    chunks = checked(src, language, max_tokens, path="m")
    return [next(c.symbol for c in chunks if sig in c.text) for sig in signatures]


def defining(src: str, language: str, *signatures: str, max_tokens: int = 100) -> list[str]:
    """The `defines` of the chunk holding each signature."""
    chunks = checked(src, language, max_tokens, path="m")
    return [next(c.defines for c in chunks if sig in c.text) for sig in signatures]


def test_python_class_methods():
    body = "\n".join("        " + s for s in BODY)
    src = f"class Greeter:\n    def hello(self):\n{body}\n\n    def bye(self):\n{body}\n"
    # The class header shares hello's chunk: named after the first definition it holds.
    assert symbols(src, "python") == ["Greeter", "Greeter.bye"]
    assert defining(src, "python", "hello", "bye") == ["Greeter, Greeter.hello", "Greeter.bye"]
    # Big enough for everything: named after the class, holding all three.
    assert symbols(src, "python", 512) == ["Greeter"]
    assert defining(src, "python", "hello", max_tokens=512) == [
        "Greeter, Greeter.hello, Greeter.bye"]


def test_rust_impl_methods():
    body = "\n".join(f"        let {s};" for s in BODY)
    src = (f"impl Point {{\n    fn new() -> Self {{\n{body}\n    }}\n\n"
           f"    fn norm(&self) -> f64 {{\n{body}\n    }}\n}}\n\n"
           f"impl fmt::Display for Point {{\n    fn fmt(&self) {{\n{body}\n    }}\n}}\n")
    assert named(src, "rust", "fn new", "fn norm", "fn fmt") == [
        "impl Point::new", "impl Point::norm", "impl fmt::Display for Point::fmt"]


def test_go_methods():
    body = "\n".join(f"\t{s.replace(' = ', ' := ')}" for s in BODY)
    src = (f"package p\n\nfunc (s *Server) Start() {{\n{body}\n}}\n\n"
           f"func (s Server) Stop() {{\n{body}\n}}\n")
    assert named(src, "go", "Start()", "Stop()") == ["Server.Start", "Server.Stop"]


def test_java_class_methods():
    body = "\n".join(f"        int {s};" for s in BODY)
    src = (f"public class Account {{\n    public void deposit() {{\n{body}\n    }}\n\n"
           f"    public void withdraw() {{\n{body}\n    }}\n}}\n")
    assert defining(src, "java", "deposit()", "withdraw()") == [
        "Account, Account.deposit", "Account.withdraw"]


def test_cpp_namespace_functions():
    body = "\n".join(f"  int {s};" for s in BODY)
    src = (f"namespace geo {{\nnamespace shapes {{\nint area() {{\n{body}\n}}\n\n"
           f"int Polygon::perimeter() const {{\n{body}\n}}\n}}  // namespace shapes\n}}\n")
    assert named(src, "cpp", "area()", "perimeter()") == [
        "geo::shapes::area", "geo::shapes::Polygon::perimeter"]


def test_typescript_class_methods():
    body = "\n".join(f"    const {s};" for s in BODY)
    src = (f"export class Queue {{\n  push(job: Job): void {{\n{body}\n  }}\n\n"
           f"  async drain(): Promise<number> {{\n{body}\n  }}\n}}\n\n"
           f"export const retry = async (fn: () => void) => {{\n{body}\n}};\n")
    assert defining(src, "typescript", "push(", "drain(", "retry") == [
        "Queue, Queue.push", "Queue.drain", "retry"]


def test_split_definition_keeps_its_name():
    body = "\n".join(f"    x{i} = compute(alpha, beta, gamma, {i})" for i in range(80))
    chunks = checked(f"def big():\n{body}\n", "python", 64)
    assert len(chunks) > 3 and {c.symbol for c in chunks} == {"big"}
    assert chunks[0].text.startswith("def big():")


def test_markdown_heading_breadcrumbs():
    src = (DATA / "sample.md").read_text()
    assert named(src, "markdown", "./install.sh", "Homebrew", "run()", max_tokens=32) == [
        "Project > Install > Linux", "Project > Install > macOS", "Project > Usage"]
    assert symbols(src, "markdown", max_tokens=40) == [
        "Project", "Project > Install > Linux", "Project > Install > macOS", "Project > Usage"]
    # Small sections merge; the chunk is named after the first and defines them all.
    assert symbols(src, "markdown", max_tokens=512) == ["Project"]
    assert defining(src, "markdown", "Homebrew", max_tokens=512) == [
        "Project, Project > Install, Project > Install > Linux, Project > Install > macOS, "
        "Project > Usage"]


def test_comment_and_decorator_stay_with_definition():
    body = "\n".join("    " + s for s in BODY)
    filler = "\n".join(f"value_{i} = compute({i})" for i in range(8))
    src = f"{filler}\n\n\n# Explains f.\n@cached\ndef f():\n{body}\n"
    chunks = checked(src, "python", 110)
    assert chunks[-1].text.startswith("# Explains f.\n@cached\ndef f():")
    assert chunks[-1].symbol == "f"


# --- size limits and bad input ------------------------------------------------------

def test_minified_2mb_single_line_js():
    rng = random.Random(7)
    parts, size = [], 0
    while size < 2_000_000:
        n = "".join(rng.choice(string.ascii_letters) for _ in range(6))
        parts.append(f"function {n}(a,b){{var c=a+b*{rng.randint(0, 999)};"
                     f"if(c>3){{return '{n}'+c}}return [a,b,{{k:c}}]}}")
        size += len(parts[-1]) + 1
    src = ";".join(parts)
    assert "\n" not in src
    chunks = chunk(src, "javascript", 512)
    check_chunks(src, chunks, 512, ENC)
    assert all(c.start_line == 1 == c.end_line for c in chunks)


def test_2mb_single_string_literal():
    rng = random.Random(3)
    text = "".join(rng.choice(string.ascii_letters + "  ") for _ in range(2_000_000))
    src = f'var s = "{text}";'
    check_chunks(src, chunk(src, "javascript", 200), 200, ENC)


@pytest.mark.parametrize(("language", "src"), [
    ("python", "x = " + "[" * 5000 + "1" + "]" * 5000 + "\n"),
    ("javascript", "f(" + "(" * 5000 + "1" + ")" * 5000 + ");\nfunction g() { return 1; }\n"),
    ("javascript", "x = " + "{a:\n" * 5000 + "1" + "}\n" * 5000),
    ("python", "(" * 5000 + "\n"),  # unbalanced
    ("json", "[" * 5000 + "]" * 5000),
])
def test_deep_nesting(language, src):
    for max_tokens in (64, 512):
        check_chunks(src, chunk(src, language, max_tokens), max_tokens, ENC)


@pytest.mark.parametrize("src", ["", " ", "\n\n\t  \n", "\u3000\u00a0\n"])
@pytest.mark.parametrize("language", ["python", "markdown", "text"])
def test_blank_files_give_no_chunks(src, language):
    assert chunk(src, language, 64) == []


@pytest.mark.parametrize("language", ["python", "javascript", "rust", "cpp", "go", "java", "ruby"])
def test_syntax_errors_do_not_crash(language):
    src = "def (((( class {{{ fn ]] )) <<< '''\n" * 40 + "\x00\x01 ok \ufeff\n" + "}" * 30
    for max_tokens in (MIN_MAX_TOKENS, 200):
        checked(src, language, max_tokens, syntax=False)


def test_crlf_and_unicode():
    src = "# café ☕\r\ndef f():\r\n    return '日本語' * 3\r\n\r\n\r\nclass A:\r\n    pass\r\n" * 30
    checked(src, "python", 64, syntax=False)


def test_max_tokens_below_minimum():
    with pytest.raises(ValueError, match="minimum"):
        chunk("x = 1\n", "python", MIN_MAX_TOKENS - 1)


def test_small_budget_shortens_the_header():
    # The header may take a third of the budget: 10 tokens of 32. With this path the
    # full name needs 11, so the outer names go from the header (not from the symbol).
    body = "\n".join("            " + s for s in BODY)
    src = f"class Outer:\n    class Inner:\n        def method(self):\n{body}\n"
    chunks = checked(src, "python", MIN_MAX_TOKENS, path="src/pkg/sub/module.py")
    for c in chunks:
        header = count_tokens(embedding_text(c.path, c.header, ""), ENC)
        assert header <= MIN_MAX_TOKENS // 3
    pieces = [c for c in chunks if c.symbol == "Outer.Inner.method" and not c.defines]
    assert pieces and {c.header for c in pieces} == {"Inner.method"}
    roomy = checked(src, "python", 48, path="m.py")
    assert "Outer.Inner.method" in {c.header for c in roomy}
    with pytest.raises(ValueError, match="no room"):
        chunk(src, "python", MIN_MAX_TOKENS, path="日本語/" * 30 + "x.py")


# --- header, ids, frame -------------------------------------------------------------

def test_header_counted_in_two_parts_matches_a_full_count():
    # The chunker counts "# <path>" once per file and " > <symbol>\n" per symbol; the sum
    # must equal a count of the whole header for any path it applies to (and the byte
    # bound used to skip counting must never be below it).
    from repo_index.core.chunk.measure import TokenMeter

    rng = random.Random(3)
    alphabet = list(string.ascii_letters + string.digits + string.punctuation + " \t") + [
        "é", "中", "😀", "\u00a0", "\r", "\n", "'s", "'ll", "123456", "<|endoftext|>"]
    split = 0
    for _ in range(1500):
        path = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90)))
        symbol = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90)))
        meter = TokenMeter("x = 1\n", path, 8192, ENC, ".")
        full = count_tokens(embedding_text(path, symbol, ""), ENC)
        assert meter.header_tokens(symbol) == full, (path, symbol)
        split += meter.path_part_tokens is not None
    assert split > 1000


def test_counts_of_chunks_that_start_mid_line():
    # A line split across chunks (long trailing comments, data rows): the next chunk's
    # count re-encodes its first line and reads the rest off the file; every count is
    # exact (check_chunks re-counts each chunk).
    rows = "\n".join(f"    0x{i:04x}: 0x{i * 7 % 65536:04x},  # {'word ' * (i % 9)}entry {i}"
                     for i in range(400))
    src = f"table = {{\n{rows}\n}}\n\nx = 1  # {'trailing comment ' * 60}\ny = 2\n"
    for max_tokens in (32, 64, 200):
        checked(src, "python", max_tokens)


def test_embedding_text_format():
    assert embedding_text("a/b.py", "C.m", "pass") == "# a/b.py > C.m\npass"
    assert embedding_text("a/b.py", "C.m, C.n +2 more", "pass") == "# a/b.py > C.m, C.n +2 more\npass"
    assert embedding_text("a/b.py", "", "pass") == "# a/b.py\npass"
    long = embedding_text("d/" * 100 + "f.py", "m", "x")
    head = long.split("\n")[0]
    assert head.startswith("# …/d/") and head.endswith("/f.py > m") and len(head) < 100
    assert "\n" not in embedding_text("a\nb.py", "x\ny", "")[:-1]


def test_chunk_id_stable_when_code_is_inserted_above():
    src = (DATA / "sample.py").read_text()
    before = chunk(src, "python", 64, path="inv.py")
    inserted = "def inserted(a, b):\n    return a * b + 42\n\n\n"
    after = chunk(src.replace("class Inventory:", inserted + "class Inventory:"), "python", 64,
                  path="inv.py")
    ids_before = dict(zip(chunk_ids(before), before))
    ids_after = dict(zip(chunk_ids(after), after))
    moved = [c for i, c in ids_before.items() if c.symbol.startswith(("Inventory", "low_stock"))]
    assert moved
    for c in moved:
        twin = next(a for a in after if a.text == c.text)
        assert twin.start_line == c.start_line + inserted.count("\n")
        assert chunk_ids([c]) == chunk_ids([twin])
        assert chunk_ids([c])[0] in ids_after
    assert len(set(ids_after) - set(ids_before)) <= 2


def test_twin_chunks_get_distinct_ids():
    c = Chunk("a.py", "python", 1, 2, "f", "def f():\n    return 1", 12)
    twin = Chunk("a.py", "python", 9, 10, "f", "def f():\n    return 1", 12)
    other_file = Chunk("b.py", "python", 1, 2, "f", "def f():\n    return 1", 12)
    ids = chunk_ids([c, twin, other_file])
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    assert chunk_ids([c]) == ids[:1]  # the first twin keeps the id it has alone
    # From a real file: the same block twice, far apart.
    body = "\n".join("    " + s for s in BODY)
    block = f"def f():\n{body}\n\n\n"
    big = "def g():\n" + "\n".join(f"    x{i} = {i}" for i in range(100)) + "\n\n\n"
    chunks = chunk(block + big + block, "python", 90)
    same = [c for c in chunks if c.text == block.strip()]
    assert len(same) == 2
    ids = chunk_ids(chunks)
    assert len(set(ids)) == len(ids)


def test_content_hash():
    assert content_hash("abc") == hashlib.sha256(b"abc").hexdigest()


def test_chunks_frame():
    src = (DATA / "sample.py").read_text()
    chunks = chunk(src, "python", 64, path="inv.py")
    frame = chunks_frame(chunks, {"inv.py": "f" * 64})
    assert list(frame.columns) == FRAME_COLUMNS == [
        "chunk_id", "path", "language", "start_line", "end_line", "symbol", "defines", "header",
        "n_tokens", "text", "content_hash", "file_sha256"]
    assert set(frame.file_sha256) == {"f" * 64}
    assert set(chunks_frame(chunks).file_sha256) == {""}
    assert len(frame) == len(chunks)
    for col in ("start_line", "end_line", "n_tokens"):
        assert frame[col].dtype == "int64"
    assert list(frame.chunk_id) == chunk_ids(chunks)
    assert list(frame.content_hash) == [content_hash(c.text) for c in chunks]
    assert frame.chunk_id.is_unique
    empty = chunks_frame([])
    assert list(empty.columns) == FRAME_COLUMNS and len(empty) == 0
    assert list(empty.dtypes) == list(frame.dtypes)


def test_speed_guard():
    # Not a benchmark (see bench/): catches quadratic regressions only.
    src = (STDLIB / "asyncio/tasks.py").read_text()
    chunk(src, "python", 200)
    start = time.perf_counter()
    for _ in range(3):
        chunk(src, "python", 200)
    assert (time.perf_counter() - start) / 3 < 0.5


def test_file_scoped_namespaces():
    # `namespace A.B;` has no body: it scopes the rest of the file.
    body = "\n".join(f"        {s};" for s in BODY)
    cs = (f"namespace Shop.Orders;\n\npublic class Order\n{{\n    public void Grant()\n"
          f"    {{\n{body.replace('total', 'int total')}\n    }}\n}}\n")
    assert defining(cs, "csharp", "Grant()", max_tokens=90) == [
        "Shop.Orders.Order, Shop.Orders.Order.Grant"]
    php = (f"<?php\nnamespace App\\Models;\n\nclass User\n{{\n    public function grant()\n"
           f"    {{\n{body.replace('total', '$total')}\n    }}\n}}\n")
    assert defining(php, "php", "grant()", max_tokens=90) == [
        "App\\Models::User, App\\Models::User::grant"]
