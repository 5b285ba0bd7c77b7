"""Operators' tools, run from a checkout against the local stack or, given MONGODB_URI, production."""
