"""The object stores that carry large stage outputs between workers.

A store-backed IPC mixin (:mod:`mosec.mixin`) hands a stage's output to the next stage as a
reference to objects in a store; only the reference crosses the engine. The layer has one module
per concept:

- :mod:`mosec.store.codec`: how an output becomes a reference (or an inline pickle) and back,
  for any store that meets its :class:`~mosec.store.codec.Store` protocol;
- :mod:`mosec.store.mapping`: the Rust handle on the server's shared-memory arena
  (``mosec._engine.ArenaClient``, which maps it and allocates in it) and views of its mapping;
- :mod:`mosec.store.arena`: the arena as a codec store;
- :mod:`mosec.store.redis`: Redis as a codec store;
- :mod:`mosec.store.arrow`: Apache Arrow IPC messages in the arena (needs pyarrow);
- :mod:`mosec.store.settings`: what the server tells the engine and its workers about the
  stores its stages use.

Store errors are :class:`mosec.errors.StoreFullError` (503) and
:class:`mosec.errors.StoreReferenceError` (500), raised by the Python stores and by the Rust
extension alike.

The package imports none of its modules, so that importing one (the server imports only
:mod:`~mosec.store.settings`) does not pull in numpy, redis-py or pyarrow.
"""
