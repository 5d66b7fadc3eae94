"""Curation scale-out: one shard function mapped over many shards on an engine, and the
hash-partitioned files a distributed shuffle exchanges (see ``references/scale-out.md``)."""
