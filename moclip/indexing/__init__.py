"""Indexing one shard of videos: decode (with time limits, optionally in a child process), embed, write."""
