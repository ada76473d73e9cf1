"""File -> language id, and per language: tree-sitter grammar and what a "definition" is.

Language ids are short lowercase names. Code languages map to a grammar bundled in
`tree_sitter_language_pack` (offline), Markdown to the official `tree_sitter_markdown`
wheel (the pack's copy of that scanner corrupts memory on some non-text input and kills
the process with SIGSEGV/SIGBUS; the official one does not). Data/markup languages
(yaml, json, toml, sql, html, css, make, dockerfile, cmake) and "text" have no grammar
and are chunked by blank-line blocks and lines. Every parse has a deadline (`parse`).

Decisions:
- `.h` is C (the usual convention) unless the first bytes look like C++ (a namespace,
  a template, a class body, or a C++ standard header include); `.hpp/.hh/.hxx/.cc/.cpp/
  .cxx` are C++. A C++ header read as C still chunks fine: unknown constructs become
  ERROR nodes, which the chunker covers like any other node.
- `.jsx` gets its own id but uses the javascript grammar (which parses JSX).
- A known extension or special file name wins over a shebang; the shebang decides for
  files without one (`bin/tool`, `script`).

Breadcrumb separators (one per language family): "::" for C, C++, Rust, PHP and Ruby
(the scope operator of those languages), " > " for Markdown headings, "." everywhere
else.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath

from tree_sitter import Language, Node, Parser, Tree

# A parse gets this long, plus this much per MB, before it is abandoned: some grammars
# loop forever on some input (TSX on a dozen garbled characters: test_hostile_input).
PARSE_SECONDS = 5.0
PARSE_SECONDS_PER_MB = 10.0
_READ_BYTES = 1 << 16  # per read callback: re-reads after a seek back copy at most this


class ParseTimeout(Exception):
    """The parser did not finish within its deadline (see `parse`)."""


@dataclass(frozen=True, slots=True)
class LanguageSpec:
    id: str
    grammar: str | None  # tree-sitter grammar name; None = chunked by blocks/lines
    # Node types that are definitions: they get a name (see `definition_name`) and
    # open a breadcrumb scope when the chunker has to descend into them.
    definitions: frozenset[str] = frozenset()
    # Node types that wrap a definition without being one (decorators, `export`,
    # `template<>`, `type (...)`): they take the label of the definition inside.
    wrappers: frozenset[str] = frozenset()
    # Besides comments: nodes that belong to the definition *after* them.
    attach_forward: frozenset[str] = frozenset()
    # Definitions that have no body and scope the rest of the file
    # (C# `namespace A.B;`, PHP `namespace App;`).
    sticky: frozenset[str] = frozenset()
    separator: str = "."
    # Keyword tokens of which every definition node has one as a direct child in a tree
    # without errors (Python `def`, `class`): its definitions are then found where these
    # words occur in the text, not by a query over every node (see `definitions`).
    keywords: frozenset[str] = frozenset()


def _spec(id: str, grammar: str | None, defs: str = "", wrappers: str = "", attach: str = "",
          sticky: str = "", sep: str = ".", keywords: str = "") -> LanguageSpec:
    return LanguageSpec(id, grammar, frozenset(defs.split()), frozenset(wrappers.split()),
                        frozenset(attach.split()), frozenset(sticky.split()), sep,
                        frozenset(keywords.split()))


_JS_DEFS = (
    "class_declaration class abstract_class_declaration function_declaration "
    "generator_function_declaration method_definition method_signature "
    "abstract_method_signature interface_declaration type_alias_declaration "
    "enum_declaration internal_module module variable_declarator public_field_definition "
    "field_definition pair assignment_expression"
)
_JS_WRAPPERS = ("export_statement lexical_declaration variable_declaration "
                "expression_statement ambient_declaration")

SPECS: dict[str, LanguageSpec] = {s.id: s for s in [
    _spec("python", "python", "class_definition function_definition", "decorated_definition",
          keywords="class def"),
    _spec("javascript", "javascript", _JS_DEFS, _JS_WRAPPERS, "decorator"),
    _spec("jsx", "javascript", _JS_DEFS, _JS_WRAPPERS, "decorator"),
    _spec("typescript", "typescript", _JS_DEFS, _JS_WRAPPERS, "decorator"),
    _spec("tsx", "tsx", _JS_DEFS, _JS_WRAPPERS, "decorator"),
    _spec("go", "go", "function_declaration method_declaration type_spec", "type_declaration"),
    _spec("rust", "rust",
          "function_item function_signature_item impl_item trait_item struct_item enum_item "
          "union_item mod_item macro_definition", attach="attribute_item", sep="::"),
    _spec("java", "java",
          "class_declaration interface_declaration enum_declaration record_declaration "
          "annotation_type_declaration method_declaration constructor_declaration"),
    _spec("kotlin", "kotlin",
          "class_declaration object_declaration companion_object function_declaration"),
    _spec("c", "c",
          "function_definition struct_specifier union_specifier enum_specifier type_definition",
          sep="::"),
    _spec("cpp", "cpp",
          "function_definition struct_specifier union_specifier enum_specifier class_specifier "
          "namespace_definition type_definition", "template_declaration", sep="::"),
    _spec("csharp", "csharp",
          "namespace_declaration file_scoped_namespace_declaration class_declaration "
          "struct_declaration interface_declaration enum_declaration record_declaration "
          "method_declaration constructor_declaration property_declaration",
          sticky="file_scoped_namespace_declaration"),
    _spec("ruby", "ruby", "class module method singleton_method singleton_class", sep="::"),
    _spec("php", "php",
          "namespace_definition class_declaration interface_declaration trait_declaration "
          "enum_declaration function_definition method_declaration",
          sticky="namespace_definition", sep="::"),
    _spec("scala", "scala",
          "class_definition object_definition trait_definition enum_definition "
          "function_definition function_declaration"),
    _spec("swift", "swift",
          "class_declaration protocol_declaration function_declaration init_declaration "
          "protocol_function_declaration"),
    _spec("bash", "bash", "function_definition"),
    _spec("lua", "lua", "function_declaration"),
    _spec("markdown", "markdown", "section", sep=" > "),
    *[_spec(name, None) for name in
      ("yaml", "json", "toml", "sql", "html", "css", "make", "dockerfile", "cmake", "text")],
]}

_EXTENSIONS: dict[str, str] = {}
for _lang, _exts in {
    "python": "py pyi pyw", "javascript": "js mjs cjs", "jsx": "jsx",
    "typescript": "ts mts cts", "tsx": "tsx", "go": "go", "rust": "rs", "java": "java",
    "kotlin": "kt kts", "c": "c h", "cpp": "cc cpp cxx c++ hpp hh hxx h++ ipp tpp inl",
    "csharp": "cs", "ruby": "rb rake gemspec ru", "php": "php phtml", "scala": "scala sc",
    "swift": "swift", "bash": "sh bash zsh ksh", "lua": "lua",
    "markdown": "md markdown mdown mkd mdx", "yaml": "yml yaml", "json": "json jsonc json5",
    "toml": "toml", "sql": "sql", "html": "html htm xhtml", "css": "css scss less",
    "make": "mk mak", "dockerfile": "dockerfile", "cmake": "cmake",
}.items():
    for _ext in _exts.split():
        _EXTENSIONS["." + _ext] = _lang

_FILENAMES = {
    "makefile": "make", "gnumakefile": "make", "dockerfile": "dockerfile",
    "containerfile": "dockerfile", "cmakelists.txt": "cmake", "rakefile": "ruby",
    "gemfile": "ruby", "guardfile": "ruby", "vagrantfile": "ruby", "podfile": "ruby",
    "brewfile": "ruby", ".bashrc": "bash", ".bash_profile": "bash", ".profile": "bash",
    ".zshrc": "bash", ".zprofile": "bash", "pipfile": "toml", "cargo.lock": "toml",
}

# Interpreter (basename, version digits stripped) -> language.
_INTERPRETERS = {
    "python": "python", "pypy": "python", "node": "javascript", "nodejs": "javascript",
    "bun": "javascript", "deno": "typescript", "ts-node": "typescript", "tsx": "typescript",
    "bash": "bash", "sh": "bash", "zsh": "bash", "dash": "bash", "ksh": "bash", "ash": "bash",
    "ruby": "ruby", "jruby": "ruby", "lua": "lua", "luajit": "lua", "php": "php",
}

_CPP_HINT = re.compile(
    rb"^\s*(?:namespace\s+\w+|template\s*<|class\s+\w+[^;{]*\{|"
    rb"#\s*include\s*<(?:iostream|string|vector|memory|map|utility|algorithm)>)",
    re.MULTILINE,
)


def _shebang_language(head: bytes) -> str | None:
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if words and PurePosixPath(words[0]).name == "env":
        # `#!/usr/bin/env -S node --flag`, `#!/usr/bin/env FOO=1 python3`
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    if not words:
        return None
    name = PurePosixPath(words[0]).name.lower().rstrip("0123456789.")
    return _INTERPRETERS.get(name)


def detect_language(path: str, head: bytes = b"") -> str:
    """Language id of a (text) file from its name, extension, or shebang line."""
    name = PurePosixPath(path.replace("\\", "/")).name.lower()
    if name in _FILENAMES:
        return _FILENAMES[name]
    if name.startswith("dockerfile.") or name.startswith("containerfile."):
        return "dockerfile"
    ext = PurePosixPath(name).suffix
    lang = _EXTENSIONS.get(ext)
    if lang == "c" and ext == ".h" and _CPP_HINT.search(head):
        return "cpp"
    if lang:
        return lang
    return _shebang_language(head) or "text"


def get_spec(language: str) -> LanguageSpec:
    """The spec of `language`; unknown ids are treated as plain text."""
    return SPECS.get(language) or SPECS["text"]


@lru_cache(maxsize=None)
def get_parser(language: str) -> Parser | None:
    """A tree-sitter parser for `language` (cached per process), or None if line-based."""
    grammar = get_spec(language).grammar
    if grammar is None:
        return None
    if grammar == "markdown":  # see the module docstring
        import tree_sitter_markdown

        return Parser(Language(tree_sitter_markdown.language()))
    from tree_sitter_language_pack import get_parser as _pack_parser  # heavy import: lazy

    return _pack_parser(grammar)


def parse(parser: Parser, data: bytes) -> Tree:
    """`parser.parse(data)` with a deadline (PARSE_SECONDS + PARSE_SECONDS_PER_MB per MB);
    raises ParseTimeout when it passes. The progress callback that enforces it is only
    honoured when the source comes through a read callback, not as one bytes object."""
    limit = PARSE_SECONDS + PARSE_SECONDS_PER_MB * len(data) / 1e6
    deadline = time.monotonic() + limit
    try:
        return parser.parse(lambda offset, _point: data[offset:offset + _READ_BYTES],
                            progress_callback=lambda _offset, _error: time.monotonic() > deadline)
    except ValueError:  # "Parsing failed": the callback halted it
        if time.monotonic() <= deadline:
            raise
        parser.reset()
        raise ParseTimeout(f"parser gave up after {limit:.1f}s") from None


# --- definition names -----------------------------------------------------------------

_FUNCTION_VALUES = frozenset({
    "arrow_function", "function_expression", "function", "generator_function", "class",
})
_IDENTIFIER_TYPES = ("type_identifier", "simple_identifier", "identifier", "constant", "name")
_MAX_NAME = 120
_MAX_NAME_BYTES = 4096


def _text(node: Node | None, source: bytes) -> str:
    # From the source, not `node.text`: a tree parsed through a read callback (see `parse`)
    # holds no source, and node.text calls the callback again.
    if node is None:
        return ""
    # Names can span lines (`impl<T>\n  Foo<T>`): collapse whitespace, cap the length.
    end = min(node.end_byte, node.start_byte + _MAX_NAME_BYTES)  # a huge node: its head will do
    text = source[node.start_byte:end].decode("utf-8", "replace")
    if not text.isidentifier():  # the usual plain name has no whitespace to collapse
        text = " ".join(text.split())
    return text[:_MAX_NAME]


def _c_declarator_name(node: Node | None, source: bytes) -> str:
    # `static int *get(int a)`: pointer_declarator -> function_declarator -> identifier;
    # the innermost declarator is an identifier, `A::b`, `~A`, `operator==`, ...
    for _ in range(16):
        if node is None:
            return ""
        inner = node.child_by_field_name("declarator")
        if inner is None:
            return _text(node, source)
        node = inner
    return ""


def _go_receiver_type(node: Node, source: bytes) -> str:
    receiver = node.child_by_field_name("receiver")
    for param in receiver.named_children if receiver else ():
        typ = param.child_by_field_name("type")
        if typ is not None:
            # `*Server[T]` -> `Server`
            return _text(typ, source).lstrip("*").split("[", 1)[0].strip()
    return ""


def definition_name(node: Node, spec: LanguageSpec, source: bytes) -> str | None:
    """Breadcrumb component for a definition node of `spec` in the parsed `source`, or None
    if it has no name (or is not a definition in this context, e.g. `const x = 1`)."""
    kind = node.type
    field = node.child_by_field_name
    if kind in ("variable_declarator", "public_field_definition", "field_definition", "pair",
                "assignment_expression"):
        value = field("value") or field("right")
        if value is None or value.type not in _FUNCTION_VALUES:
            return None
        name = field("name") or field("property") or field("key") or field("left")
        return _text(name, source).strip("'\"`") or None
    if spec.id == "go" and kind == "method_declaration":
        recv = _go_receiver_type(node, source)
        name = _text(field("name"), source)
        return f"{recv}.{name}" if recv else name or None
    if kind == "impl_item":
        trait, typ = _text(field("trait"), source), _text(field("type"), source)
        return f"impl {trait} for {typ}" if trait else f"impl {typ}"
    if spec.id in ("c", "cpp"):
        if kind == "function_definition":
            return _c_declarator_name(field("declarator"), source) or None
        if kind == "type_definition":
            return _text(field("declarator"), source) or None
        if kind.endswith("_specifier") and field("body") is None:
            return None  # `struct foo *p;` names a type, it doesn't define one
        if kind == "namespace_definition" and field("name") is None:
            return "(anonymous)"
    if kind == "section":  # markdown: the heading's text
        heading = node.named_children[0] if node.named_child_count else None
        if heading is None or not heading.type.endswith("heading"):
            return None
        content = heading.child_by_field_name("heading_content")
        return _text(content, source) or None
    if kind == "singleton_method":  # ruby `def self.x`
        return f"{_text(field('object'), source)}.{_text(field('name'), source)}"
    if kind == "singleton_class":  # ruby `class << self`
        return f"<< {_text(field('value'), source)}"
    name = field("name")
    if name is not None:
        return _text(name, source).strip("'\"`") or None
    if spec.id == "kotlin":
        # No fields in the Kotlin grammar: the first identifier child is the name.
        for child in node.named_children:
            if child.type in _IDENTIFIER_TYPES:
                name = _text(child, source)
                recv = node.child_by_field_name("receiver")  # `fun Foo.ext()`
                return f"{_text(recv, source)}.{name}" if recv is not None else name
        return "Companion" if kind == "companion_object" else None
    return None
