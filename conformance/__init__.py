"""kms-conformance: a conformance harness for 3GPP TS 33.180 Annex D Key Management Servers."""

__version__ = "0.1.0"
