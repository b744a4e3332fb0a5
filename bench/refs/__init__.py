"""Reference systems measured in the same run (etcd locks, Redis pub/sub and Streams).

Keys of their figures, for `ctx.record(..., ref=...)` in the mesh's own sections; a reference that was
skipped or not selected renders as "not measured" rather than failing the referring section.
"""

ETCD_LOCK_ROUND_P50 = "etcd.lock_round_p50"
ETCD_LOCK_ROUND_P99 = "etcd.lock_round_p99"
ETCD_LOCK_UNLOCK_P50 = "etcd.lock_unlock_p50"
ETCD_LOCK_UNLOCK_P99 = "etcd.lock_unlock_p99"
ETCD_CONTENDED_HANDOVERS = "etcd.contended_handovers"
ETCD_HTTP_LOCK_ROUND_P50 = "etcd.http_lock_round_p50"
ETCD_FORMATION = "etcd.formation_s"
ETCD_TAKEOVER = "etcd.takeover_s"

REDIS_PUBSUB_THROUGHPUT = "redis.pubsub_throughput"
REDIS_PUBSUB_P50 = "redis.pubsub_latency_p50"
REDIS_PUBSUB_P99 = "redis.pubsub_latency_p99"
REDIS_STREAMS_THROUGHPUT = "redis.streams_throughput"
REDIS_STREAMS_P50 = "redis.streams_latency_p50"
REDIS_STREAMS_P99 = "redis.streams_latency_p99"
REDIS_STREAMS_ACK_P50 = "redis.streams_ack_p50"
REDIS_STREAMS_ACK_P99 = "redis.streams_ack_p99"
