"""`make chaos`: faults injected on purpose into the real platform (issue 10 items 1 and 3); see run.py."""
