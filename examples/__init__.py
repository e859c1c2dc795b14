"""Runnable meshsrpc examples."""
