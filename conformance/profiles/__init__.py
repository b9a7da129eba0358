"""Release profiles: which schema, namespace, element order and encodings apply.

``get_profile(name)`` returns a frozen ``Profile``; ``load_schema(profile)`` its compiled
XSD (cached per process); ``reference_3gpp_schema(path)`` loads a 3GPP-style XSD offline.
"""

from conformance.profiles.profile import (
    KMS_INTERFACE_NS,
    Profile,
    ProfileError,
    load_fast_schema,
    load_schema,
)
from conformance.profiles.registry import DEFAULT_PROFILE_NAME, PROFILES, get_profile
from conformance.profiles.schemas import SCHEMA_DIR, import_locations, reference_3gpp_schema

__all__ = [
    "DEFAULT_PROFILE_NAME",
    "KMS_INTERFACE_NS",
    "PROFILES",
    "SCHEMA_DIR",
    "Profile",
    "ProfileError",
    "get_profile",
    "import_locations",
    "load_fast_schema",
    "load_schema",
    "reference_3gpp_schema",
]
