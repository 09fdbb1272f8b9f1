"""The NGSI-LD domain: terms, entity model, query languages and errors (no I/O)."""
