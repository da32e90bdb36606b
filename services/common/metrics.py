"""Prometheus metrics shared by every service. Labels are bounded sets: never a request, resident or person."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS_HANDLED = Counter("events_handled", "Messages handled successfully", ["service", "queue", "event_type"])
EVENTS_FAILED = Counter("events_failed", "Handler attempts that raised", ["service", "queue", "event_type"])
EVENTS_DEAD_LETTERED = Counter("events_dead_lettered", "Messages sent to a dead-letter queue",
                               ["service", "queue", "reason"])
INBOX_DUPLICATES = Counter("inbox_duplicates", "Redelivered messages skipped by the inbox", ["service", "queue"])
HANDLER_SECONDS = Histogram("event_handler_duration_seconds", "Time spent handling one message",
                            ["service", "queue"], buckets=LATENCY_BUCKETS)
OUTBOX_PUBLISHED = Counter("outbox_published", "Outbox events published with broker confirms", ["service"])
OUTBOX_MESSAGES = Counter("outbox_messages", "Broker messages the outbox relay published with confirms (a message "
                          "carries one event, or a pack of consecutive events of one type)", ["service"])
OUTBOX_PUBLISH_ERRORS = Counter("outbox_publish_errors", "Outbox relay publish failures (will retry)",
                                ["service", "kind"])
BATCHES_REDONE = Counter("consumer_batches_redone", "Batches rolled back in fast mode and run again with a "
                         "savepoint per message (a handler raised or left statements uncommitted)", ["service"])
