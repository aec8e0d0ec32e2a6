"""WebAssembly component actors, loaded to look exactly like a Python actor module.

    actor = load_component(Path("actors/examples/wasm-counter/counter.wasm"),
                           fuel=10_000_000, memory_limit=64 << 20, timeout=5.0, wasi=WasiGrants())
    (state,) = actor.init(None)
    state, (reply,) = actor.handle_request(state, (b'{"type": "get"}',))

Theory of operation.

* A component implements the world ``message-server-actor`` of
  ``wit/message-server.wit``: it may export ``theater:simple/actor`` (``init``)
  and ``theater:simple/message-server-client`` (the five handlers; any subset
  is accepted) and may import ``theater:simple/message-server-host``.
  A :class:`ComponentActor` has an attribute for each handler the component
  exports, with the Python actors' signature and return shape, so the daemon
  (``getattr(module, "handle_request", None)``) and ``actors.testing`` use it
  unchanged.  ``init(state)`` passes ``message_server.current_actor()`` (or
  ``""`` with no host bound) as the WIT ``init``'s actor id.
* Compilation is per file and cached in-process by (path, mtime, size); with a
  ``cache_dir`` the compiled code is also kept on disk, keyed by the file's
  hash, wasmtime's version and the engine configuration.  One process-wide
  :class:`wasmtime.Engine` serves every actor (fuel metering and epoch
  interruption are always on, so one compilation serves every limit).
* Each ComponentActor owns one Store and one instance.  A trap poisons a
  Store, so after a trap the actor drops it and instantiates afresh before
  its next call; nothing is lost because the state is a parameter of every
  call.  Linear memory does not outlive a trap.
* Host imports call the thread-bound host of :mod:`actors.message_server`.  A
  :class:`~actors.message_server.MessageServerError` becomes the WIT
  ``err`` value; any other exception traps the guest and is re-raised to
  the caller of the handler unchanged (so the daemon's own control-flow
  exceptions keep working).
* Values cross in bulk (:mod:`daemon.wasm.abi`), not through wasmtime-py's
  per-byte generic conversion; a component made from one core module is
  run at the core level with the canonical ABI done in Python
  (:mod:`daemon.wasm.core`), moving each value with one memcpy.
* Linear memories are made by :mod:`daemon.wasm.memory`, so a refused
  growth is seen and a trap after it is reported as the memory limit.

Modules, each importing only those above it: ``errors``, ``abi`` (values),
``memory`` (linear memories), ``core`` (the fast path), ``contract`` (names,
signatures, grants), ``engine`` (Engine, caches, epoch ticker), ``host``
(host functions, linkers), ``actor`` (load_component, ComponentActor).

Thread safety: an Engine and a compiled Component may be shared by threads;
a Store may not.  A ComponentActor serialises its calls with a lock (the
daemon runs one handler per actor at a time anyway).
"""

from __future__ import annotations

from .actor import ComponentActor, load_component
from .contract import HANDLERS, WasiGrants
from .errors import ComponentError, ComponentFailed, ComponentTrap

__all__ = [
    "ComponentActor",
    "ComponentError",
    "ComponentFailed",
    "ComponentTrap",
    "HANDLERS",
    "WasiGrants",
    "load_component",
]
