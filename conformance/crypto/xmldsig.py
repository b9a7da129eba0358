"""Moved to ``conformance.xmlsec.xmldsig`` (issue 17: crypto/ holds no XML); this path only
re-exports it so that older imports keep working. New code imports conformance.xmlsec."""

from conformance.xmlsec.xmldsig import *  # noqa: F403
