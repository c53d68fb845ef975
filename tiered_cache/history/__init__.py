"""The access history: a sampled, bounded record of a cache's reads.

Issue 9, item 4. Training and warming need to know which keys the whole
deployment reads, and the L1 sizing estimate needs each process's reuse
distances; a full log would cost every request and every byte of the store.
So the history is:

* *sampled by key* (``sampling``): a key is recorded when a stable hash of
  its stored key falls under ``SAMPLE_RATE`` of the hash space, so a sampled
  key is always sampled, in every process, and its reuse is seen whole
  (SHARDS' spatial sampling);
* *cheap on the request thread* (``recorder``): the backend's ``get`` is
  wrapped only when ``OPTIONS["HISTORY"]`` is set; a key outside the sample
  costs one dict lookup more, a sampled one appends a tuple to a bounded
  in-process buffer;
* *flushed off the request thread* (``flush``) by the metrics flusher's
  thread, to the shared store (``store``: L2, else L3), where the log is a
  ring of ``MAX_RECORDS`` accesses and the sampled keys' names a bounded side
  table (``MAX_KEYS``) that warming reads;
* the source of the online miss-ratio curve of L1 (``shards``).

Importing this package is light (``conf`` reads ``options`` at start-up).
"""
