"""urbanstack: an open urban data platform built around an NGSI-LD context broker."""

__version__ = "0.1.0"
NGSI_LD_SPEC_VERSION = "1.8.1"
