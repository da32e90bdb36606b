"""`make bench`: the platform's throughput, latency, timers, growth and resources against its targets, beside a
minimal kombu + psycopg baseline measured in the same run (issue 9). Entry point: `python -m bench.run [--quick]`."""
