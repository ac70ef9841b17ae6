"""Search an indexed dataset by text or by example."""
