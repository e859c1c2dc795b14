"""Placeholder until the three-node demo lands."""

print("meshsrpc demo: coming with the examples issue")
