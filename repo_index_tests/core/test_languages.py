from __future__ import annotations

from pathlib import Path

import pytest

from repo_index.core.chunk.languages import SPECS, definition_name, detect_language, get_parser, get_spec, parse

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(("path", "expected"), [
    ("a/b.py", "python"), ("x.PYI", "python"), ("app.js", "javascript"), ("m.mjs", "javascript"),
    ("c.jsx", "jsx"), ("t.ts", "typescript"), ("t.d.ts", "typescript"), ("v.tsx", "tsx"),
    ("main.go", "go"), ("lib.rs", "rust"), ("A.java", "java"), ("k.kt", "kotlin"),
    ("b.kts", "kotlin"), ("x.c", "c"), ("x.h", "c"), ("x.hpp", "cpp"), ("x.cc", "cpp"),
    ("x.CXX", "cpp"), ("P.cs", "csharp"), ("r.rb", "ruby"), ("i.php", "php"),
    ("s.scala", "scala"), ("s.swift", "swift"), ("run.sh", "bash"), ("x.zsh", "bash"),
    ("init.lua", "lua"), ("README.md", "markdown"), ("doc.MARKDOWN", "markdown"),
    ("ci.yml", "yaml"), ("p.json", "json"), ("pyproject.toml", "toml"), ("q.sql", "sql"),
    ("i.html", "html"), ("s.scss", "css"), ("Makefile", "make"), ("sub/GNUmakefile", "make"),
    ("Dockerfile", "dockerfile"), ("Dockerfile.dev", "dockerfile"), ("CMakeLists.txt", "cmake"),
    ("Gemfile", "ruby"), ("Rakefile", "ruby"), (".bashrc", "bash"), ("LICENSE", "text"),
    ("notes.txt", "text"), ("weird.xyz", "text"), ("win\\path\\mod.py", "python"),
])
def test_detect_by_name(path, expected):
    assert detect_language(path) == expected


@pytest.mark.parametrize(("head", "expected"), [
    (b"#!/usr/bin/env python3\nprint(1)\n", "python"),
    (b"#!/usr/bin/python3.11 -u\n", "python"),
    (b"#!/usr/bin/env node\n", "javascript"),
    (b"#!/usr/bin/env -S node --no-warnings\n", "javascript"),
    (b"#!/bin/sh\n", "bash"), (b"#!/bin/bash -e\n", "bash"), (b"#!/usr/bin/zsh\n", "bash"),
    (b"#!/usr/bin/env ruby\n", "ruby"), (b"#!/usr/bin/env lua5.4\n", "lua"),
    (b"#!/usr/bin/php\n", "php"), (b"#!/usr/bin/env FOO=1 python\n", "python"),
    (b"#!/usr/bin/perl\n", "text"), (b"#!\n", "text"), (b"no shebang\n", "text"), (b"", "text"),
])
def test_detect_by_shebang(head, expected):
    assert detect_language("bin/tool", head) == expected


def test_extension_wins_over_shebang():
    assert detect_language("x.py", b"#!/bin/sh\n") == "python"


def test_h_header_is_c_unless_it_looks_like_cpp():
    assert detect_language("x.h", b"#include <stdio.h>\nint f(void);\n") == "c"
    assert detect_language("x.h", b"#pragma once\nnamespace geo {\n") == "cpp"
    assert detect_language("x.h", b"template <typename T> T id(T x);\n") == "cpp"
    assert detect_language("x.h", b"class Foo : public Bar {\n") == "cpp"


def test_specs_and_parsers():
    code = [s for s in SPECS.values() if s.grammar]
    assert len(code) >= 18
    for spec in code:
        parser = get_parser(spec.id)
        assert parser is not None and parser is get_parser(spec.id)  # cached
        assert parser.parse(b"x").root_node is not None
    for lang in ("yaml", "json", "text", "make", "no-such-language"):
        assert get_parser(lang) is None
    assert get_spec("no-such-language").id == "text"


def _definitions(language: str, source: str) -> list[str]:
    """Names of all definition nodes, in document order (walked iteratively)."""
    spec = get_spec(language)
    data = source.encode()
    root = parse(get_parser(language), data).root_node
    names, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.type in spec.definitions:
            name = definition_name(node, spec, data)
            if name:
                names.append(name)
        stack.extend(reversed(node.children))
    return names


@pytest.mark.parametrize(("language", "source", "expected"), [
    ("python", "class A:\n    def m(self): pass\n@d\ndef f(): pass\n", ["A", "m", "f"]),
    ("go", "package p\nfunc (s *Server) Handle() {}\nfunc (Box[T]) Get() {}\ntype T struct{}\n",
     ["Server.Handle", "Box.Get", "T"]),
    ("rust", "impl Foo { fn a() {} }\nimpl<T> fmt::Display for Bar<T> { fn fmt() {} }\n",
     ["impl Foo", "a", "impl fmt::Display for Bar<T>", "fmt"]),
    ("cpp", "namespace ns { int f() { return 0; } }\nint A::size() const { return 1; }\n"
            "static int *g(void) { return 0; }\nA::~A() {}\nnamespace { void h() {} }\n",
     ["ns", "f", "A::size", "g", "A::~A", "(anonymous)", "h"]),
    ("c", "struct s { int x; };\nstruct s *p;\ntypedef struct { int y; } t;\nint main(void) {}\n",
     ["s", "t", "main"]),
    ("typescript", "class C { m() {} }\nconst f = () => 1;\nconst n = 1;\ninterface I {}\n",
     ["C", "m", "f", "I"]),
    ("javascript", "Foo.prototype.bar = function () {};\nconst o = { k: () => 1 };\n",
     ["Foo.prototype.bar", "k"]),
    ("java", "class A { void m() {} A() {} }", ["A", "m", "A"]),
    ("kotlin", "class V { fun len() = 1 }\nfun V.ext() {}\nobject O {}\n",
     ["V", "len", "V.ext", "O"]),
    ("ruby", "module M\n  class C\n    def m; end\n    def self.s; end\n  end\nend\n",
     ["M", "C", "m", "self.s"]),
    ("lua", "function M.f() end\nfunction M:g() end\nlocal function h() end\n",
     ["M.f", "M:g", "h"]),
    ("markdown", "# A\n\n## B *c*\n\ntext\n", ["A", "B *c*"]),
])
def test_definition_names(language, source, expected):
    assert _definitions(language, source) == expected


def test_every_sample_has_a_known_language():
    for path in DATA.iterdir():
        head = path.read_bytes()[:256]
        assert detect_language(path.name, head) != "text" or path.suffix == ".txt", path
