"""Peak memory of clustering stays at the band index, not the signature matrix."""

import tracemalloc

import numpy as np
import pyarrow as pa

from llmstack_dagster.core.curation.dedup import DedupConfig, find_duplicate_clusters
from llmstack_dagster.core.curation.dedup.fingerprints import fingerprint_schema
from llmstack_dagster.core.curation.dedup.union_find import connected_components
from llmstack_dagster.core.storage import ShardInfo, ShardManifest

DOCS_PER_SHARD = 2_000


def write_fingerprints(storage, config: DedupConfig, shards: int) -> ShardManifest:
    """Random signatures (no text): a many-shard corpus without duplicates."""
    rng = np.random.default_rng(shards)
    infos = []
    for s in range(shards):
        n = DOCS_PER_SHARD
        sig = rng.integers(0, 1 << 32, size=(n, config.num_perm), dtype=np.uint32)
        r = config.rows_per_band
        columns = [
            pa.array([f"d/{s:03d}-{i:05d}" for i in range(n)]),
            pa.array(["web"] * n),
            pa.array(np.full(n, 1_600_000_000_000_000, dtype="datetime64[us]")).cast(
                pa.timestamp("us", tz="UTC")
            ),
            pa.array(rng.integers(0, 1 << 63, n, dtype=np.uint64)),
            pa.array(rng.integers(0, 1 << 63, n, dtype=np.uint64)),
            pa.array(np.full(n, 1000, dtype=np.int64)),
            pa.array(np.full(n, 100, dtype=np.int32)),
        ] + [
            pa.FixedSizeListArray.from_arrays(pa.array(sig[:, b * r : (b + 1) * r].ravel()), r)
            for b in range(config.num_bands)
        ]
        table = pa.Table.from_arrays(columns, schema=fingerprint_schema(config))
        rel = f"document_fingerprints/web/part-{s:05d}.parquet"
        infos.append(ShardInfo(path=rel, rows=n, bytes=storage.write_table(rel, table)))
    return ShardManifest(
        asset="document_fingerprints",
        partition="web",
        shards=infos,
        extra={"signature_params": config.signature_params()},
    )


def peak_numpy_bytes(storage, manifest, config) -> int:
    connected_components(2, np.array([0]), np.array([1]))  # load compiled code before tracing
    tracemalloc.start()
    try:
        find_duplicate_clusters(storage, {"web": manifest}, config)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_band_by_band_peak_is_far_below_signature_matrix(storage) -> None:
    config = DedupConfig()
    manifest = write_fingerprints(storage, config, shards=40)
    n = 40 * DOCS_PER_SHARD
    peak = peak_numpy_bytes(storage, manifest, config)
    signature_matrix = n * config.num_perm * 4
    print(
        f"n={n} peak={peak / 1e6:.1f} MB, full signatures would be {signature_matrix / 1e6:.1f} MB"
    )
    # one band's values, keys, sort order and index columns: about 100-150 bytes a document
    assert peak < 200 * n
    assert peak < signature_matrix / 3
