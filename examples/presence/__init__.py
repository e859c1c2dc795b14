"""The presence example app: proto, generated code, server, client, and a node for the demo."""
