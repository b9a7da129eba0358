"""The security step: signature, decryption, key unwrapping and the UE key state.

response.py (``unprotect``: the response as the UE reads it, and the facts the
``security.*`` checks judge), uestate.py (the TrK and InK each user's UE holds while a
case runs). May import: the stages up to probe.
"""
