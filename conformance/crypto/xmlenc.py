"""Moved to ``conformance.xmlsec.xmlenc`` (issue 17: crypto/ holds no XML); this path only
re-exports it so that older imports keep working. New code imports conformance.xmlsec."""

from conformance.xmlsec.xmlenc import *  # noqa: F403
