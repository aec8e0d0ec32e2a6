"""theaterd: the theater daemon (trio).  Importing this package is cheap: no trio."""

__version__ = "0.1.0"
