"""Release profiles: which schema, namespace, element order and encodings apply."""

from conformance.profiles.schemas import import_locations, reference_3gpp_schema

__all__ = ["import_locations", "reference_3gpp_schema"]
