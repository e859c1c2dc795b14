"""Two presence nodes and three clients in one process, on ``memory://``: no Redis at all."""
