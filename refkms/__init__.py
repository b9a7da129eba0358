"""The reference KMS: a TS 33.180 Annex D server with a catalogue of named faults.

It may import ``conformance.crypto`` and nothing else from the harness.
"""
