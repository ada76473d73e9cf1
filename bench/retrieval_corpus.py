"""The retrieval benchmark's corpus and queries, made from code nobody here wrote.

A fixed list of pure-Python standard-library packages is copied with every docstring
removed: the docstring's lines are deleted from the source text (a body left empty gets
`pass` at the docstring's indent; a docstring sharing its line with code becomes `pass`),
so the rest is byte for byte the original. Each stripped file is checked: its syntax tree
must equal the original's without docstrings, else the file is left out and counted.

Queries are chosen by rule, never by hand (CodeSearchNet-style):
- description: the first sentence of a function's docstring (up to the first ". " or
  blank line, whitespace normalised), when it has at least 4 words; a sentence that
  describes two functions of the corpus is left out (no single answer);
- identifier: a function's bare name, when no other function of the corpus has it.
The answer is the function's file and its `def` line in the stripped copy.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Chosen up front for size (about 3,500 chunks at the local model's 200-token budget) and
# variety (parsers, protocols, concurrency, import machinery, testing); chosen before any
# result was seen, and not to be changed to improve one.
DEFAULT_PACKAGES = ("json", "email", "logging", "http", "xml", "concurrent", "importlib", "asyncio", "urllib",
                    "multiprocessing", "unittest")
MIN_QUERY_WORDS = 4


@dataclass(frozen=True)
class Query:
    kind: str  # "description" or "identifier"
    text: str
    path: str  # corpus-relative, POSIX
    def_line: int  # 1-based, in the stripped file
    qualname: str
    end_line: int  # the function's last line, for the lenient diagnostic (any hit inside it)


@dataclass(frozen=True)
class Function:
    path: str
    qualname: str
    def_line: int  # in the stripped file
    end_line: int
    docstring: str | None


@dataclass
class Corpus:
    files: int = 0
    bytes: int = 0
    docstrings_removed: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> files or functions left out
    functions: list[Function] = field(default_factory=list)


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
            and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return body[0]
    return None


def _without_docstrings(tree: ast.Module) -> str:
    """The dump of `tree` with docstrings removed as strip_docstrings removes them."""
    for node in ast.walk(tree):
        doc = _docstring_node(node)
        if doc is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def strip_docstrings(source: str) -> tuple[str, int]:
    """(source without docstrings, how many were removed). Raises SyntaxError for a file
    Python cannot parse and ValueError when the result is not the same program."""
    tree = ast.parse(source)
    # Lines as the parser counts them: str.splitlines would also split at form feeds.
    lines = re.findall(r"[^\n]*\n|[^\n]+$", source)
    edits = []  # (first line index, last line index, replacement lines), applied bottom-up
    for node in ast.walk(tree):
        doc = _docstring_node(node)
        if doc is None:
            continue
        first, last = doc.lineno - 1, doc.end_lineno - 1
        # Column offsets are UTF-8 byte offsets.
        head = lines[first].encode()[:doc.col_offset].decode()
        tail = lines[last].encode()[doc.end_col_offset:].decode()
        rest = tail.strip()
        if head.strip() == "" and (rest in ("", ";") or rest.startswith("#")):
            edits.append((first, last, [head + "pass\n"] if len(node.body) == 1 else []))
        elif rest.startswith(";") and rest[1:].strip():  # `"doc"; code`: the code stays
            edits.append((first, last, [head + tail.split(";", 1)[1].lstrip(" \t")]))
        else:  # the docstring shares a line with code (`def f(): "doc"`): only its text becomes `pass`
            edits.append((first, last, [head + "pass" + tail]))
    for first, last, new in sorted(edits, reverse=True):
        lines[first:last + 1] = new
    stripped = "".join(lines)
    if _without_docstrings(ast.parse(stripped)) != _without_docstrings(tree):
        raise ValueError("stripped file is not the same program")
    return stripped, len(edits)


def _functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) of every function and method, nested ones included."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    out.append((name, child))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def build_corpus(dest: Path, packages: tuple[str, ...] = DEFAULT_PACKAGES) -> Corpus:
    """Copy `packages` of this Python's standard library, docstrings stripped and tests
    left out, to `dest/<package>/...`; every function with its def line and docstring."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = Corpus()
    for package in packages:
        base = stdlib / package
        if not base.is_dir():
            raise SystemExit(f"{package!r} is not a package of the standard library at {stdlib}")
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(stdlib)
            if any(part in ("test", "tests") or part.startswith("test_") for part in rel.parts):
                corpus.skipped["test file"] += 1
                continue
            try:
                source = path.read_text(encoding="utf-8")
                stripped, removed = strip_docstrings(source)
            except (UnicodeDecodeError, SyntaxError, ValueError) as exc:
                corpus.skipped[f"not stripped: {type(exc).__name__}"] += 1
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(stripped, encoding="utf-8")
            corpus.files += 1
            corpus.bytes += len(stripped.encode())
            corpus.docstrings_removed += removed
            docs = {name: ast.get_docstring(node) for name, node in _functions(ast.parse(source))}
            defs = _functions(ast.parse(stripped))
            counts = Counter(name for name, _ in defs)
            for name, node in defs:
                if counts[name] > 1:  # redefined in one file (property setters, if/else): no single answer
                    corpus.skipped["function defined twice in its file"] += 1
                    continue
                corpus.functions.append(Function(rel.as_posix(), name, node.lineno, node.end_lineno, docs.get(name)))
    return corpus


def first_sentence(docstring: str) -> str:
    paragraph = re.split(r"\n\s*\n", docstring.strip(), maxsplit=1)[0]
    text = " ".join(paragraph.split())
    return text.split(". ", 1)[0].rstrip(".")


def make_queries(corpus: Corpus) -> tuple[list[Query], Counter]:
    """Every description and identifier query the rules give, and what was left out why."""
    left_out: Counter = Counter()
    described = []
    for f in corpus.functions:
        if not f.docstring:
            left_out["description: no docstring"] += 1
            continue
        sentence = first_sentence(f.docstring)
        if len(sentence.split()) < MIN_QUERY_WORDS:
            left_out[f"description: first sentence under {MIN_QUERY_WORDS} words"] += 1
            continue
        described.append(Query("description", sentence, f.path, f.def_line, f.qualname, f.end_line))
    texts = Counter(q.text for q in described)
    queries = [q for q in described if texts[q.text] == 1]
    left_out["description: same sentence for several functions"] += len(described) - len(queries)
    names = Counter(f.qualname.rsplit(".", 1)[-1] for f in corpus.functions)
    for f in corpus.functions:
        name = f.qualname.rsplit(".", 1)[-1]
        if names[name] > 1:
            left_out["identifier: name not unique in the corpus"] += 1
            continue
        queries.append(Query("identifier", name, f.path, f.def_line, f.qualname, f.end_line))
    return queries, left_out
