"""Where an offset is in a syntax tree: the chain of nodes that contain it, outermost first."""

from __future__ import annotations

from genbac.spec import ast


def _inside(span, offset: int) -> bool:
    return span.start <= offset <= span.end


def _children(node) -> tuple:
    if isinstance(node, ast.Block):
        return (node.kind, *node.labels, *node.entries)
    if isinstance(node, ast.Setting):
        return (node.key, node.value)
    if isinstance(node, ast.Import):
        return (node.path,) + ((node.alias,) if node.alias else ())
    if isinstance(node, ast.Chain):
        return node.terms
    if isinstance(node, ast.Call):
        return (node.name, *node.args)
    if isinstance(node, ast.Arg):
        return ((node.key,) if node.key else ()) + (node.value,)
    if isinstance(node, (ast.ListValue, ast.TupleValue)):
        return node.items
    return ()


def chain_at(document: ast.Document, offset: int) -> list:
    """The nodes containing `offset`, outermost first ([] outside every statement)."""
    found: list = []
    nodes = document.items
    while True:
        for node in nodes:
            if _inside(node.span, offset):
                found.append(node)
                nodes = _children(node)
                break
        else:
            return found


def blocks_of(chain: list) -> list[ast.Block]:
    return [n for n in chain if isinstance(n, ast.Block)]


def walk_blocks(items, parents: tuple = ()):
    """Every block with its enclosing blocks, in the order written."""
    for item in items:
        if isinstance(item, ast.Block):
            yield item, parents
            yield from walk_blocks(item.entries, parents + (item,))
