"""One module per command; each exposes ``command``.  Keep them thin: parse, call, render."""
