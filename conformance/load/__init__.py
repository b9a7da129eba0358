"""``kms-conformance load``: the catalogue's checks under load, on Locust (issue 16).

Only ``conformance.load.locustrun`` imports Locust (and with it gevent, which patches the
standard library); it is imported by the ``load`` command alone, so ``run`` and every
other command never see gevent. The other modules here are plain Python.
"""
