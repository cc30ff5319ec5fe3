"""meshchat's benchmarks (``make bench``): throughput, fan-out latency, stream memory."""
