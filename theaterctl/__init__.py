"""theaterctl: the command-line client for theaterd (click; no trio for one-shot commands)."""

__version__ = "0.1.0"
