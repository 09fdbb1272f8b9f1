"""Use cases: one function per NGSI-LD operation, shared by every entry point."""
