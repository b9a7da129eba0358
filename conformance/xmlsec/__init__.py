"""XML security of Annex D: XML signature (xmldsig.py) and XML encryption (xmlenc.py).

The layer above ``conformance.crypto`` (which stays pure: no XML): exclusive C14N 1.0,
HMAC-SHA256 signatures named by key ID, AES-GCM EncryptedData and AES key wrap of the
TrK/InK-protected elements. May import: conformance.crypto and lxml; the reference KMS
imports it (and conformance.crypto) and nothing else of the harness.
"""
