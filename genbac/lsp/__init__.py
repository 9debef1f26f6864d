"""`genbac lsp`: the language server for .genba files (pygls 2 over stdio).

    server.py     the edge: LSP messages in, notifications and answers out (pygls)
    analysis.py   one document checked as `genbac check` does: syntax tree, plans, diagnostics
    positions.py  offsets in a text <-> LSP line/character positions
    convert.py    genbac's Diagnostic -> LSP diagnostics and quick fixes
    hover.py      what the compiler decided about what is under the cursor
    complete.py   keys, blocks and values that fit where the cursor is
    outline.py    document symbols and go to definition

Everything but server.py is plain functions over text, spans and plans, tested without a client;
tests/lsp/ also drives the real server through a JSON-RPC client process. Like `check`, none of it
imports torch, transformers, datasets or mlflow.
"""
