"""Operators' tools: commands run by hand against a deployment (erase one site's or project's personal data)."""
