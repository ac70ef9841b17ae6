"""Training and evaluation on frozen features."""
