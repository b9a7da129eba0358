"""Helpers of tests/test_probe.py: a reference KMS target and tiny misbehaving servers."""
