"""Syntax-aware chunking of source files with an exact token cap.

How a file is cut (`chunk_source`):

1. Parse with tree-sitter (code, Markdown) or split into blank-line blocks (data and
   text files). Tokenise the whole file once; the tokens of any byte range are then
   estimated in O(1) from that one tokenisation (`measure.TokenMeter`).
2. Pack siblings greedily, in order, up to the budget, descending into a node too big
   alone and carrying its header (or the comments above it) into its first piece; where
   syntax gives no cut, cut by lines, and a line by tokens (`packing`, `cuts`).
3. Groups become chunks: the file is partitioned at the group starts, so nothing is lost
   or duplicated, and each piece is counted exactly, header included; one over the cap is
   halved, a tiny one joins its neighbour (`emitting`).

What a chunk holds and how it is embedded: `records`; how it is named: `naming`, from
the file's definitions (`definitions`).

Input text must be a valid Python str without lone surrogates (files are decoded as
UTF-8 upstream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from repo_index.core.chunk.cuts import blank_line_blocks, children_with_gaps, line_spans
from repo_index.core.chunk.definitions import Definitions, find_definitions
from repo_index.core.chunk.emitting import ChunkEmitter
from repo_index.core.chunk.languages import get_parser, get_spec, parse
from repo_index.core.chunk.measure import TokenMeter
from repo_index.core.chunk.naming import Namer
from repo_index.core.chunk.packing import Packer
from repo_index.core.chunk.records import MIN_MAX_TOKENS, Chunk

if TYPE_CHECKING:
    import tiktoken


def chunk_source(text: str, path: str, language: str, max_tokens: int,
                 encoding: tiktoken.Encoding, syntax: bool = True) -> list[Chunk]:
    """Split one file into chunks of at most `max_tokens` (header included), covering all
    of its non-whitespace text in order. Syntax errors are fine (they are chunked like
    any other node); raises ValueError only if `max_tokens` < MIN_MAX_TOKENS or the path
    alone leaves under 16 tokens for code, and languages.ParseTimeout if the grammar does
    not finish in time (`syntax=False` then cuts by blank-line blocks and lines)."""
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens={max_tokens} is below the minimum of {MIN_MAX_TOKENS}")
    if not text.strip():
        return []
    spec = get_spec(language)
    meter = TokenMeter(text, path, max_tokens, encoding, spec.separator)
    data = meter.data
    parser = get_parser(language) if syntax else None
    if parser is None:
        namer = Namer(meter, Definitions())
        items = blank_line_blocks(data, meter.newlines)
    else:
        root = parse(parser, data).root_node
        namer = Namer(meter, find_definitions(parser.language, root, spec, data))
        items = (children_with_gaps(data, root.children, 0, len(data))
                 or line_spans(meter, 0, len(data), max_tokens - meter.path_header))
    groups = Packer(spec, namer).pack(items, (), None, 0)
    return ChunkEmitter(path, language, namer).chunks(groups)
