"""The presence server mounted in a FastAPI app next to ordinary HTTP routes."""
