"""The parsed KMS messages: KmsResponse and everything it carries (TS 33.180 D.3).

messages.py parses a response by namespace and local name and judges nothing; the
profiles package beside it (same stage) says which schema and namespace apply.
May import: core, verdicts, crypto, xmlsec.
"""
