"""The worker process: where actor code runs.

``theaterd`` starts each worker as ``python -m daemon.worker FD`` from a fresh
interpreter, with one end of a socketpair as file descriptor ``FD`` (and no
other inherited descriptor but standard input, output and error).  The link
speaks the client protocol's framing (:mod:`daemon.wire`); the operations are
described in ``docs/worker-protocol.md``.  The daemon configures the worker
first (sandbox, limits), then loads actor modules into it and runs their
handlers; host calls made by a handler travel back over the same link.

Nothing here imports trio: a worker is plain threads around a blocking socket.
"""
