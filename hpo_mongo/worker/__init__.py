"""The worker: claim loop, evaluation in a child process, heartbeats and signals."""
