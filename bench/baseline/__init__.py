"""The baseline: the same hops as the platform with plain kombu + psycopg and no framework, in its own schema
(`baseline` in the benchmark database) and vhost. Each hop is one OS process: consume, decode, one transaction
with its row (and inbox / outbox rows), commit, publish with confirms, delete the outbox row, ack."""
