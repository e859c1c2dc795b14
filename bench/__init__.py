"""meshsrpc benchmarks: ``python -m bench`` (``make bench``, ``make bench FULL=1``)."""
