"""Passage encoding on a Ray cluster (`sprig index --ray [ADDRESS]`): the shards of sprig.indexer.build, encoded
by a Ray Data pipeline instead of this process.

This process still reads the corpus, cuts it into the build's shards (the same passages under the same row
numbers) and commits each encoded shard exactly as a single-process build does, so the shard files, ``--resume``
and the finished index are the same whichever way the shards were encoded. Only the encoding moves:
``map_batches`` sends one shard at a time to ``ShardEncoder``, a callable class of which each Ray actor holds one
model replica (with one GPU each when the cluster has GPUs, else ``ray.cpus_per_replica`` CPUs), and the shards
come back in order. A replica whose worker process dies is restarted and its shard encoded again (Ray Data's
actor fault tolerance: restarts and task retries without limit); a shard is written only when it comes back, so
a lost attempt leaves nothing behind.

The passages of the shards still to do are handed to Ray up front (the object store spills them to disk when they
outgrow it). Every Ray node needs sprig installed: each replica imports it and loads its models where it runs. Ray
is imported only here, and this module only when ``--ray`` is given.
"""
from __future__ import annotations

import logging
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from sprig.core.config import RayConfig, SprigConfig
from sprig.core.errors import SprigError
from sprig.corpus.chunking import Passage, passage_text
from sprig.encoders.factory import Encoded, EncoderSet

log = logging.getLogger(__name__)

LOCAL = "local"  # --ray without an address: a runtime on this machine, or the cluster $RAY_ADDRESS names
CONNECT_TIMEOUT_S = 10.0


def _probe(address: str) -> None:
    """Fail fast, with the address in the message, when nothing listens there (ray.init would wait a minute)."""
    if address in (LOCAL, "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    expected = "a Ray head at HOST:PORT (its GCS port, 6379 by default) or ray://HOST:PORT (Ray Client, 10001)"
    if not host or not port.isdigit():
        raise SprigError(f"{address}: not a Ray address; expected {expected}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise SprigError(f"{address}: no Ray cluster answers there ({exc.strerror or exc}); expected {expected}") from None


class ShardEncoder:
    """One model replica (a Ray actor): encodes whole shards with the build's encoders, fitted BM25 included."""

    def __init__(self, config: SprigConfig, bm25_files: dict[str, bytes]):
        from sprig.encoders.bm25 import BM25Encoder

        bm25 = None
        if bm25_files:  # the fitted statistics travel as files (the encoder holds an unpicklable stemmer)
            with tempfile.TemporaryDirectory(prefix="sprig-bm25-") as tmp:
                for name, blob in bm25_files.items():
                    (Path(tmp) / name).write_bytes(blob)
                bm25 = BM25Encoder.load(tmp)
        ic = config.index
        self.encoders = EncoderSet.build(config, config.sparse_encoders, ic.dense, bm25, ic.sentence_vectors, ic.chunk_vectors)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        encoded = [self.encoders.encode(list(texts), list(bodies)) for texts, bodies in zip(batch["texts"], batch["bodies"])]
        return {"shard": batch["shard"], "encoded": np.array(encoded, dtype=object)}


def _bm25_files(encoders: EncoderSet) -> dict[str, bytes]:
    bm25 = encoders.sparse.get("bm25")
    if bm25 is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="sprig-bm25-") as tmp:
        bm25.save(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir()}


class RayEncoding:
    """A connection to a Ray cluster that encodes a build's shards (``encode``)."""

    def __init__(self, config: SprigConfig):
        try:
            import ray
        except ImportError:
            raise SprigError("--ray needs Ray Data: pip install 'sprig[ray]'") from None
        settings: RayConfig = config.ray
        _probe(settings.address)
        try:
            ray.init(address=None if settings.address == LOCAL else settings.address, ignore_reinit_error=True, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SprigError(f"{settings.address}: cannot join the Ray cluster there: {str(exc).splitlines()[0]}") from None
        self.config, self.settings = config, settings

    def _replicas(self, shards: int) -> tuple[int, dict]:
        """How many replicas to start and what each reserves: a GPU each when the cluster has any, else CPUs."""
        import ray

        resources = ray.cluster_resources()
        if resources.get("GPU", 0) >= 1:
            wanted, reserve = self.settings.replicas or int(resources["GPU"]), {"num_gpus": 1}
        else:
            wanted = self.settings.replicas or int(resources.get("CPU", 1) // self.settings.cpus_per_replica)
            reserve = {"num_cpus": self.settings.cpus_per_replica}
        return max(1, min(wanted, shards)), reserve

    def encode(self, batches: Iterable[list[Passage]], encoders: EncoderSet) -> Iterator[tuple[list[Passage], Encoded]]:
        """Each shard's passages with their encodings, in shard order; ``encoders`` are the build's own (only its
        fitted BM25 statistics are sent: every replica loads its models itself, on its own device)."""
        import ray

        pending = list(batches)
        if not pending:
            return
        items = [{"shard": i, "texts": [passage_text(p) for p in batch], "bodies": [p.text for p in batch]} for i, batch in enumerate(pending)]
        replicas, reserve = self._replicas(len(pending))
        log.info("encoding %d shards on Ray with %d replicas (%s each)", len(pending), replicas, reserve)
        ray.data.DataContext.get_current().execution_options.preserve_order = True  # shards are committed in order
        encoded = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardEncoder, fn_constructor_args=(self.config, _bm25_files(encoders)), batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=replicas), **reserve)
        for row in encoded.iter_rows():
            yield pending[row["shard"]], row["encoded"]
