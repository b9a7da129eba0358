"""What every stage uses: exchange records, XML limits and hardened parsing, data files.

exchange.py (one recorded HTTP exchange), limits.py (the target's [limits] budgets),
xmlsafe.py (hardened XML parsing under those limits), datafiles.py (where testcases/ and
schemas/ are). The lowest stage: imports nothing of the harness but itself.
"""
