"""The probe: a case step becomes an HTTP request to the KMS and a recorded exchange.

sender.py holds ``Probe`` (one per target and run), bodies.py the request bodies and
tokens, transport.py httpx on httpcore with one deadline per exchange. May import: core,
verdicts, crypto, xmlsec, model, profiles, target; never the checks or the engine.
"""
