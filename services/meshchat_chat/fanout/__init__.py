"""Fan-out of new messages to this replica's open streams: the hub and its PostgreSQL listener."""
