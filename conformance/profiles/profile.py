"""What a release profile fixes: schema, namespace, element order, encodings, algorithms.

Values and their sources: DESIGN.md section 7, spec/sources.md section 3 and
spec/kms-interface.md section 19. The registry of named profiles is in ``registry``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from lxml import etree

if TYPE_CHECKING:  # imported when a schema is compiled: it costs ~0.1 s at start-up
    import xmlschema

from conformance.profiles.schemas import (
    KRR_NS,
    NAMESPACE_PLACEHOLDER,
    XENC_NS,
    XMLDSIG_NS,
    compile_profile_fast,
    compile_profile_schema,
)

KMS_INTERFACE_NS: Final = "urn:3gpp:ns:mcsecKMSInterface:1.0"


class ProfileError(ValueError):
    """An unknown profile name or a namespace the profile cannot take."""


@dataclass(frozen=True)
class Profile:
    """One release profile. Tuples list element local names in schema order."""

    name: str
    namespace: str
    schema_file: str
    krr_namespace: str
    response_child_order: tuple[str, ...]
    request_child_order: tuple[str, ...]
    user_id_encoding: str
    user_id_encodings: tuple[str, ...]
    require_xsi_type: bool
    expected_versions: Mapping[str, str] = field(hash=False)
    token_scopes: tuple[str, ...]
    has_trk_id_elements: bool
    has_lookup: bool
    message_encryption_algorithms: tuple[str, ...]
    key_wrap_algorithms: tuple[str, ...]
    c14n_methods: tuple[str, ...]
    namespace_configurable: bool = False
    description: str = ""
    # Stateful UE scenarios (conformance/protection/uestate.py). The key that protects the response
    # delivering a new TrK/InK: "held" (the key the UE held before it; default) or
    # "delivered" (the signature uses the delivered InK/TrK; encryption always uses the
    # held TrK, since the new TrK travels inside the encrypted message).
    delivering_response_keys: str = "held"
    # A request naming the TrK the UE held before a rotation: "either" (served under that
    # TrK, REQ-129, or refused with a KmsError), "served" or "refused".
    old_trk_id_after_rotation: str = "either"
    # After the KMS replaced its own certificate (conformance/run/control.py), a KmsCertCache
    # entry for the KMS's own KmsUri: "if-listed" (default: the cache need not list the
    # KMS's own certificate, D.3.1 names partner domains; one it lists is the new one),
    # "required" (the cache lists the new one) or "unchecked". Inferred: a warning.
    own_certificate_in_certcache: str = "if-listed"

    def __post_init__(self) -> None:
        # A caller's dict must not be able to change a registered profile afterwards.
        frozen_versions = MappingProxyType(dict(self.expected_versions))
        object.__setattr__(self, "expected_versions", frozen_versions)
        if self.user_id_encoding not in self.user_id_encodings:
            raise ProfileError(
                f"profile {self.name!r}: default user_id_encoding {self.user_id_encoding!r} "
                f"is not among the accepted {self.user_id_encodings}"
            )

    @property
    def lenient(self) -> bool:
        """Lenient profiles accept key elements without ``xsi:type`` (sources.md row 9)."""
        return not self.require_xsi_type


def load_schema(profile: Profile, namespace: str | None = None) -> xmlschema.XMLSchema:
    """The compiled XSD of ``profile``, in ``namespace`` if the profile lets it be chosen.

    Compiled once per (schema, namespace) per process: compiling takes about a second.
    """
    chosen = _chosen_namespace(profile, namespace)
    if chosen is None:
        return compile_profile_schema(profile.schema_file)
    return compile_profile_schema(profile.schema_file, chosen)


def load_fast_schema(profile: Profile, namespace: str | None = None) -> etree.XMLSchema | None:
    """libxml2's compilation of the same XSD (``compile_profile_fast``), or None.

    It does not compile the xmlschema one (about a second): a run whose documents are all
    valid never needs it.
    """
    chosen = _chosen_namespace(profile, namespace)  # the same namespace rules and errors
    if chosen is None:
        return compile_profile_fast(profile.schema_file)
    return compile_profile_fast(profile.schema_file, chosen)


def _chosen_namespace(profile: Profile, namespace: str | None) -> str | None:
    """The namespace to write into a configurable profile's XSD; None for a fixed one."""
    chosen = profile.namespace if namespace is None else namespace
    if chosen != profile.namespace and not profile.namespace_configurable:
        raise ProfileError(
            f"profile {profile.name!r} has the fixed namespace {profile.namespace!r}; "
            f"{chosen!r} needs a profile with a configurable namespace (rel13-legacy)"
        )
    if not profile.namespace_configurable:
        return None
    _check_namespace(chosen)
    return chosen


_UNSAFE_IN_NAMESPACE = re.compile(r"[\s\"'<>&]")
_IMPORTED_NAMESPACES = frozenset({XMLDSIG_NS, XENC_NS, KRR_NS, NAMESPACE_PLACEHOLDER})


def _check_namespace(namespace: str) -> None:
    # The namespace is pasted into XSD text, so anything that could end the attribute or
    # clash with an imported vocabulary is refused before it reaches the compiler.
    if not namespace or _UNSAFE_IN_NAMESPACE.search(namespace):
        raise ProfileError(f"namespace {namespace!r} is not a usable namespace URI")
    if namespace in _IMPORTED_NAMESPACES:
        raise ProfileError(
            f"namespace {namespace!r} belongs to an imported vocabulary, not to the KMS interface"
        )
