"""The target: PICS, PIXIT, users and secrets of the target file, and authentication.

file.py reads the TOML tables (load_target), values.py the typed values and secrets,
template.py writes ``kms-conformance target --template``, auth.py says how a user proves
who it is (token, identity header, headers, TLS client certificate). The target stage also
holds conformance/load/users.py (a target file's [user_pattern]). May import: core,
verdicts, crypto, xmlsec, model, profiles.
"""
