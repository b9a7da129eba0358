"""Fuzzing support: valid reference-KMS responses, and hypothesis strategies that mutate them.

``fetch_bases`` starts the reference KMS over loopback HTTPS once per protection variant
(plain, signed, message-encrypted with and without a signature, per-key wrapped with and
without a signature), asks it for every request type and keeps the answers as bytes,
with a target file per variant so that ``kms-conformance check`` can decrypt and verify.
The users' TrK and InK are fixed here, so a saved reproducer still decrypts and verifies
in a later session.

``mutants`` draws one mutation of a document: drop, duplicate, reorder or rename elements,
change text or attributes, flip a bit of base64/hex text, truncate the octets; and the
changes that must not matter: another namespace prefix, an extension element where the
schema has ``##other``, whitespace between elements. Every ``Mutant`` says what it did.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st
from lxml import etree

from refkms.config import config_from_mapping
from refkms.domain import Domain
from refkms.faults import ActiveFaults
from refkms.profiles import PROFILES, TOKEN_SCOPE
from refkms.server import running_in_thread
from refkms.state import StateDir
from refkms.target import target_description, write_target

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "vectors" / "schema-samples" / "refkms"
CORPUS = REPO / "tests" / "vectors" / "fuzz-corpus"

NS = "urn:3gpp:ns:mcsecKMSInterface:1.0"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
EXTENSION_NS = "urn:example:kms-conformance:fuzz-extension"

UE = "sip:user@example.org"
# As in tests/refkms: kat mode with a fixed clock and ECCSI v, so the key set validates
# against the section 18.1 certificate; the TrK/InK values are fixed on top.
FUZZ_CONFIG: dict[str, Any] = {
    "kat": True,
    "clock": "2014-01-26T10:07:14Z",
    "eccsi_fixed_v": "23456",
    "users": [
        {
            "uri": UE,
            "trk_id": "dHJrLjEudXNlcg==",
            "ink_id": "aW5rLjEudXNlcg==",
            "trk": "000102030405060708090a0b0c0d0e0f",
            "ink": "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
        },
        {"uri": "sip:bob@example.org", "trk_id": "dHJrLjEuYm9i", "ink_id": "aW5rLjEuYm9i"},
    ],
}

# Variant name -> [protection] of the reference KMS.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"encryption": "none", "signing": False},
    "signed": {"encryption": "none", "signing": True},
    "message": {"encryption": "message", "signing": False},
    "message-signed": {"encryption": "message", "signing": True},
    "keys": {"encryption": "keys", "signing": False},
    "keys-signed": {"encryption": "keys", "signing": True},
}
SIGNED_VARIANTS = ("signed", "message-signed", "keys-signed")

# Request type -> resource asked for (DESIGN.md section 7).
RESOURCES = {
    "init": "init",
    "keyprov": "keyprov",
    "certcache": "certcache",
    "cert": "cert/kms.example.org",
    "lookup": "lookup/sip%3Auser1%40partner1.example.net",
}

# Parents whose content model ends in <xs:any namespace="##other"> (schemas/ts33180*/).
EXTENSIBLE = ("KmsResponse", "KmsInit", "KmsCertificate", "KmsKeyProv", "KmsCertCache", "KmsLookup")
KMS_NAMES = (
    "KmsResponse", "UserUri", "KmsUri", "Time", "KmsId", "ClientReqUrl", "KmsMessage",
    "KmsError", "TrK-ID", "Signature-ID", "KmsInit", "KmsKeyProv", "KmsCertCache",
    "KmsLookup", "KmsCertificate", "KmsKeySet", "UserID", "UserDecryptKey",
    "UserSigningKeySSK", "UserPubTokenPVT", "PubEncKey", "PubAuthKey", "CertUri",
    "ValidFrom", "ValidTo", "Revoked", "UserKeyPeriod", "UserKeyOffset", "Issuer",
    "KeyPeriodNo", "KmsDomainList", "NewTransportKey", "NewIntegrityKey",
)  # fmt: skip
XSI_TYPES = ("KeyContentType", "EncKeyContentType", "KmsInitTkIkType", "KmsKeyProvTkIkType")


@dataclass(frozen=True)
class Base:
    """One valid response as the reference KMS sent it, and what ``check`` needs for it."""

    name: str  # "<variant>/<request type>" or "sample/<file name>"
    variant: str
    request_type: str | None
    data: bytes
    target: Path | None
    init: Path | None


@dataclass(frozen=True)
class Mutant:
    data: bytes
    kind: str
    where: str  # the element changed, as a path of local names ("" for octet mutations)
    detail: str
    in_signed_content: bool  # the change is inside the signed KmsResponse

    def describe(self) -> str:
        return f"{self.kind} at {self.where or 'octets'}: {self.detail}"


# -- fetching the bases ------------------------------------------------------------------


def fetch_bases(workdir: Path) -> dict[str, Base]:
    """Every variant x request type from live reference KMSs, plus the saved samples."""
    state = StateDir(workdir / "refkms-state")
    bases: dict[str, Base] = {}
    init_file = workdir / "plain-init.xml"
    for variant, protection in VARIANTS.items():
        target_file = workdir / f"target-{variant}.toml"
        with _serving(state, protection, target_file) as (client, base_url, token):
            for kind, resource in RESOURCES.items():
                reply = client.post(
                    f"{base_url}/{resource}", headers={"Authorization": f"Bearer {token}"}
                )
                if reply.status_code != 200:
                    raise RuntimeError(f"{variant} {resource}: HTTP {reply.status_code}")
                bases[f"{variant}/{kind}"] = Base(
                    f"{variant}/{kind}", variant, kind, reply.content, target_file, init_file
                )
    # The certificate is the same in every variant; the plain one is readable without keys.
    init_file.write_bytes(bases["plain/init"].data)
    for sample in sorted(SAMPLES.glob("*.xml")):
        init = SAMPLES / "r16-init.xml"
        bases[f"sample/{sample.name}"] = Base(
            f"sample/{sample.name}", "sample", None, sample.read_bytes(), None, init
        )
    return bases


@contextmanager
def _serving(
    state: StateDir, protection: dict[str, Any], target_file: Path
) -> Iterator[tuple[httpx.Client, str, str]]:
    config = config_from_mapping(FUZZ_CONFIG | {"protection": protection})
    domain = Domain(config, PROFILES["ts33180-r17"], ActiveFaults(()), state)
    tls = state.tls()
    with ExitStack() as stack:
        listening = stack.enter_context(running_in_thread(domain, tls))
        context = ssl.create_default_context(cafile=str(tls.ca_file))
        client = stack.enter_context(httpx.Client(verify=context, timeout=30))
        write_target(target_file, target_description(domain, listening.base_url, tls.ca_file))
        yield client, listening.base_url, domain.tokens.mint(UE, TOKEN_SCOPE)


# -- mutation strategies -----------------------------------------------------------------

TREE_KINDS = ("drop", "duplicate", "reorder", "rename", "text", "attribute", "bitflip")
HARMLESS_KINDS = ("prefix", "extension", "whitespace")
ALL_KINDS = (*TREE_KINDS, "truncate", *HARMLESS_KINDS)


def mutants(
    document: bytes,
    kinds: Sequence[str] = ALL_KINDS,
    *,
    scope: str | None = None,
) -> st.SearchStrategy[Mutant]:
    """One mutation of ``document`` of one of ``kinds``.

    ``scope``: ``"signed"`` keeps tree mutations inside the signed ``KmsResponse``;
    ``"cipher"`` makes ``bitflip`` hit only ``xenc:CipherValue``; ``"outside-signed"``
    makes ``whitespace`` go only between the children of ``SignedKmsResponse``.
    A kind that has no target in the document draws one of the other kinds.
    """
    usable = [k for k in kinds if k == "truncate" or _target_count(document, k, scope)]
    if not usable:
        raise ValueError(f"no mutation of {list(kinds)} applies to this document")
    return st.sampled_from(usable).flatmap(lambda kind: _mutant(document, kind, scope))


def _mutant(document: bytes, kind: str, scope: str | None) -> st.SearchStrategy[Mutant]:
    if kind == "truncate":
        return st.integers(0, max(0, len(document) - 1)).map(
            lambda at: Mutant(document[:at], "truncate", "", f"cut at octet {at}", True)
        )
    candidates = _target_count(document, kind, scope)
    return st.integers(0, candidates - 1).flatmap(
        lambda index: _MUTATORS[kind](document, index, scope)
    )


@functools.lru_cache(maxsize=4096)
def _target_count(document: bytes, kind: str, scope: str | None) -> int:
    # Every example asks again for the same few documents; parsing them once is enough.
    return len(_targets(_parse(document), kind, scope))


def _targets(root: etree._Element, kind: str, scope: str | None) -> list[etree._Element]:
    elements = _elements_in_scope(root, scope if kind in TREE_KINDS else None)
    if kind in ("drop", "duplicate"):
        return [e for e in elements if e.getparent() is not None]
    if kind == "reorder":
        return [e for e in elements if len(set(map(_c14n, _children(e)))) >= 2]
    if kind == "rename":
        return elements
    if kind == "text":
        return [e for e in elements if not _children(e)]
    if kind == "attribute":
        return elements
    if kind == "bitflip":
        if scope == "cipher":
            return [e for e in root.iter(f"{{{XENC}}}CipherValue") if _binary(e.text)]
        return [e for e in elements if not _children(e) and _binary(e.text)]
    if kind == "prefix":
        return [root]
    if kind == "extension":
        return [e for e in _elements(root) if e.tag in {f"{{{NS}}}{n}" for n in EXTENSIBLE}]
    if kind == "whitespace":
        if scope == "outside-signed":
            return [root] if root.tag == f"{{{NS}}}SignedKmsResponse" else []
        return [e for e in _elements(root) if _children(e) and _element_only(e)]
    raise ValueError(f"unknown mutation kind {kind!r}")


def _elements_in_scope(root: etree._Element, scope: str | None) -> list[etree._Element]:
    if scope == "signed":
        signed = _signed_response(root)
        return _elements(signed) if signed is not None else []
    return _elements(root)


def _mutate(
    kind: str,
    detail_strategy: Callable[[etree._Element], st.SearchStrategy[str]],
) -> Callable[[bytes, int, str | None], st.SearchStrategy[Mutant]]:
    """A mutator: draw how to change the ``index``-th target, then apply it to a fresh tree.

    ``detail_strategy(element)`` draws an instruction string the ``_apply_*`` function of
    the kind understands, so a failing example shrinks and prints as plain data.
    """

    def mutator(document: bytes, index: int, scope: str | None) -> st.SearchStrategy[Mutant]:
        probe = _targets(_parse(document), kind, scope)[index]

        def apply(instruction: str) -> Mutant:
            root = _parse(document)
            element = _targets(root, kind, scope)[index]
            where = _path(element)
            inside = _is_signed_content(root, element)
            detail = _APPLY[kind](root, element, instruction)
            if kind == "prefix":
                root = _renamespaced(root, _prefix_mapping(instruction))
            data = etree.tostring(root.getroottree(), encoding="utf-8", xml_declaration=True)
            return Mutant(data, kind, where, detail, inside)

        return detail_strategy(probe).map(apply)

    return mutator


# -- what each kind draws -------------------------------------------------------------------

_XML_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"
) | st.sampled_from("\t\n ")


def _text_values(element: etree._Element) -> st.SearchStrategy[str]:
    old = element.text or ""
    return st.one_of(
        st.just("empty:"),
        st.integers(1000, 200_000).map(lambda n: f"huge:{n}"),
        st.text(_XML_CHARS, min_size=1, max_size=20).map(lambda t: f"set:{t}"),
        st.sampled_from(["é", "ü", "日本", "\u200b", "𝄞", "\u202e"]).map(lambda t: f"set:{old}{t}"),
        st.sampled_from([" ", "\n", "\t", "  \n "]).flatmap(
            lambda ws: st.sampled_from([f"set:{ws}{old}", f"set:{old}{ws}"])
        ),
    )


_ATTRIBUTE_NAMES = ("Version", f"{{{XSI}}}type", "Id", "Type", "Algorithm", "URI")
_ATTRIBUTE_VALUES = (
    "", "1.0.0", "1.1.0", "2.0.0", "KeyContentType", "EncKeyContentType", "bogus:Type",
    "KmsInitTkIkType", "kms-response", "#kms-response", "#other",
    "http://www.w3.org/2001/04/xmlenc#Element", "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
)  # fmt: skip


def _attribute_changes(element: etree._Element) -> st.SearchStrategy[str]:
    present = sorted(element.attrib.keys())
    changes = [
        st.tuples(st.sampled_from(_ATTRIBUTE_NAMES), st.sampled_from(_ATTRIBUTE_VALUES)).map(
            lambda nv: f"set:{nv[0]}={nv[1]}"
        )
    ]
    if present:
        changes.append(st.sampled_from(present).map(lambda n: f"remove:{n}"))
        changes.append(
            st.tuples(st.sampled_from(present), st.text(_XML_CHARS, max_size=12)).map(
                lambda nv: f"set:{nv[0]}={nv[1]}"
            )
        )
    return st.one_of(changes)


def _renames(element: etree._Element) -> st.SearchStrategy[str]:
    local = etree.QName(element).localname
    names = [n for n in (*KMS_NAMES, "Bogus", local.lower()) if n != local]
    same_ns = st.sampled_from(names).map(lambda n: f"local:{n}")
    other_ns = st.sampled_from([EXTENSION_NS, "", NS, DS, XENC]).map(lambda ns: f"ns:{ns}")
    return st.one_of(same_ns, other_ns)


def _reorders(element: etree._Element) -> st.SearchStrategy[str]:
    count = len(_children(element))
    return st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)).map(
        lambda ij: f"swap:{ij[0]},{ij[1]}"
    )


def _bit_positions(element: etree._Element) -> st.SearchStrategy[str]:
    octets = _binary(element.text)
    assert octets is not None
    return st.integers(0, len(octets[0]) * 8 - 1).map(lambda bit: f"bit:{bit}")


def _prefix_maps(root: etree._Element) -> st.SearchStrategy[str]:
    uris = sorted(_namespaces(root))
    prefixes = st.from_regex(r"\A[a-w][a-z0-9]{0,5}\Z").filter(lambda p: not p.startswith("xml"))
    # A default namespace would capture unqualified elements, so none is made then.
    default = st.sampled_from([None, *uris]) if not _unqualified(root) else st.none()

    def instruction(chosen: tuple[list[str], str | None]) -> str:
        names, default_uri = chosen
        pairs = zip(uris, names, strict=True)
        return "map:" + " ".join(f"{u}=" if u == default_uri else f"{u}={p}" for u, p in pairs)

    return st.tuples(
        st.lists(prefixes, min_size=len(uris), max_size=len(uris), unique=True), default
    ).map(instruction)


def _extensions(element: etree._Element) -> st.SearchStrategy[str]:
    return st.tuples(st.text(_XML_CHARS, max_size=16), st.booleans()).map(
        lambda tb: f"ext:{int(tb[1])}:{tb[0]}"
    )


def _whitespace(element: etree._Element) -> st.SearchStrategy[str]:
    slots = len(_children(element)) + 1
    return st.tuples(
        st.integers(0, slots - 1),
        st.text(st.sampled_from(sorted(_WHITESPACE)), min_size=1, max_size=8),
    ).map(lambda sw: f"ws:{sw[0]}:{sw[1]}")


# Whitespace travels in an instruction as letters, so a failing example prints readably.
_WHITESPACE = {"s": " ", "t": "\t", "n": "\n", "r": "\r"}


# -- applying an instruction to a fresh tree ---------------------------------------------


def _apply_drop(root: etree._Element, element: etree._Element, _: str) -> str:
    parent = element.getparent()
    assert parent is not None
    _remove_keeping_tail(element)
    return "removed"


def _apply_duplicate(root: etree._Element, element: etree._Element, _: str) -> str:
    clone = copy.deepcopy(element)
    clone.tail = element.tail
    element.addnext(clone)
    return "duplicated"


def _apply_reorder(root: etree._Element, element: etree._Element, instruction: str) -> str:
    i, j = (int(n) for n in instruction.removeprefix("swap:").split(","))
    children = _children(element)
    a, b = children[i], children[j]
    if i != j:
        tail_a, tail_b = a.tail, b.tail
        placeholder = etree.Element("placeholder")
        element.replace(a, placeholder)
        element.replace(b, a)
        element.replace(placeholder, b)
        # The whitespace stays where it was; only the two elements trade places.
        b.tail, a.tail = tail_a, tail_b
    return f"swapped children {i} and {j}"


def _apply_rename(root: etree._Element, element: etree._Element, instruction: str) -> str:
    qname = etree.QName(element)
    if instruction.startswith("local:"):
        new = etree.QName(qname.namespace, instruction.removeprefix("local:"))
    else:
        namespace = instruction.removeprefix("ns:") or None
        new = etree.QName(namespace, qname.localname)
    element.tag = new.text
    return f"{qname.localname} -> {new.text}"


def _apply_text(root: etree._Element, element: etree._Element, instruction: str) -> str:
    how, _, value = instruction.partition(":")
    if how == "empty":
        element.text = ""
        return "emptied the text"
    if how == "huge":
        element.text = "A" * int(value)
        return f"text of {value} characters"
    element.text = value
    return f"text set to {value!r}"


def _apply_attribute(root: etree._Element, element: etree._Element, instruction: str) -> str:
    how, _, rest = instruction.partition(":")
    if how == "remove":
        del element.attrib[rest]
        return f"removed attribute {rest}"
    name, _, value = rest.partition("=")
    element.set(name, value)
    return f"attribute {name} = {value!r}"


def _apply_bitflip(root: etree._Element, element: etree._Element, instruction: str) -> str:
    bit = int(instruction.removeprefix("bit:"))
    decoded = _binary(element.text)
    assert decoded is not None
    octets, encoding = decoded
    flipped = bytearray(octets)
    flipped[bit // 8] ^= 1 << (bit % 8)
    text = element.text or ""
    if encoding == "hex":
        new = flipped.hex()
        element.text = new.upper() if text.strip().isupper() else new
    else:
        element.text = base64.b64encode(bytes(flipped)).decode("ascii")
    return f"flipped bit {bit} of {len(octets)} {encoding} octets"


def _apply_prefix(root: etree._Element, element: etree._Element, instruction: str) -> str:
    # The rebuild itself happens in _mutate: lxml cannot change an element's nsmap in place.
    mapping = _prefix_mapping(instruction)
    return "namespace prefixes " + ", ".join(f"{u}->{p or '(default)'}" for u, p in mapping.items())


def _prefix_mapping(instruction: str) -> dict[str, str | None]:
    mapping: dict[str, str | None] = {}
    for pair in instruction.removeprefix("map:").split(" "):
        uri, _, prefix = pair.rpartition("=")
        mapping[uri] = prefix or None
    return mapping


def _apply_extension(root: etree._Element, element: etree._Element, instruction: str) -> str:
    _, with_attribute, text = instruction.split(":", 2)
    extension = etree.SubElement(element, f"{{{EXTENSION_NS}}}Extension")
    extension.text = text
    if with_attribute == "1":
        element.set(f"{{{EXTENSION_NS}}}note", "fuzz")
    last = _children(element)[-2] if len(_children(element)) > 1 else None
    if last is not None:
        extension.tail, last.tail = last.tail, extension.tail
    return f"extension element appended to {etree.QName(element).localname}"


def _apply_whitespace(root: etree._Element, element: etree._Element, instruction: str) -> str:
    _, slot, letters = instruction.split(":", 2)
    whitespace = "".join(_WHITESPACE[letter] for letter in letters)
    index = int(slot)
    if index == 0:
        element.text = (element.text or "") + whitespace
    else:
        child = _children(element)[index - 1]
        child.tail = (child.tail or "") + whitespace
    return f"whitespace {whitespace!r} in slot {index}"


_APPLY: dict[str, Callable[[etree._Element, etree._Element, str], str]] = {
    "drop": _apply_drop,
    "duplicate": _apply_duplicate,
    "reorder": _apply_reorder,
    "rename": _apply_rename,
    "text": _apply_text,
    "attribute": _apply_attribute,
    "bitflip": _apply_bitflip,
    "prefix": _apply_prefix,
    "extension": _apply_extension,
    "whitespace": _apply_whitespace,
}

_MUTATORS = {
    "drop": _mutate("drop", lambda e: st.just("")),
    "duplicate": _mutate("duplicate", lambda e: st.just("")),
    "reorder": _mutate("reorder", _reorders),
    "rename": _mutate("rename", _renames),
    "text": _mutate("text", _text_values),
    "attribute": _mutate("attribute", _attribute_changes),
    "bitflip": _mutate("bitflip", _bit_positions),
    "prefix": _mutate("prefix", _prefix_maps),
    "extension": _mutate("extension", _extensions),
    "whitespace": _mutate("whitespace", _whitespace),
}


# -- what a mutation changed ---------------------------------------------------------------


def signed_content(document: bytes) -> bytes | None:
    """What the signature covers, canonical (C14N 1.0), plus the signed envelope's shape.

    ``None`` for octets that do not parse. Comparing this before and after a mutation
    tells whether the mutation changed signed content: whitespace between the children
    of ``SignedKmsResponse`` does not; anything in or around the ``KmsResponse`` does.
    """
    try:
        root = _parse(document)
    except etree.XMLSyntaxError:
        return None
    shape = [root.tag, *sorted(root.attrib.items())]
    parts = [repr(shape).encode()]
    for child in _children(root):
        if child.tag == f"{{{DS}}}Signature":
            parts.append(b"<ds:Signature>")
        else:
            parts.append(_c14n(child))
    return b"\0".join(parts)


def cipher_values(document: bytes) -> list[str]:
    return [e.text or "" for e in _parse(document).iter(f"{{{XENC}}}CipherValue")]


# -- small helpers ---------------------------------------------------------------------


def _parse(document: bytes) -> etree._Element:
    # The bases are the reference KMS's own output; entities stay unresolved all the same.
    return etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True))


def _elements(root: etree._Element) -> list[etree._Element]:
    return [e for e in root.iter() if isinstance(e.tag, str)]


def _children(element: etree._Element) -> list[etree._Element]:
    return [c for c in element if isinstance(c.tag, str)]


def _element_only(element: etree._Element) -> bool:
    texts = [element.text, *(c.tail for c in element)]
    return all(not (t or "").strip() for t in texts)


def _c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n")


def _signed_response(root: etree._Element) -> etree._Element | None:
    if root.tag == f"{{{NS}}}SignedKmsResponse":
        return root.find(f"{{{NS}}}KmsResponse")
    return None


def _is_signed_content(root: etree._Element, element: etree._Element) -> bool:
    signed = _signed_response(root)
    if signed is None:
        return False
    return element is signed or any(a is signed for a in element.iterancestors())


def _path(element: etree._Element) -> str:
    names = [etree.QName(e).localname for e in (*reversed(list(element.iterancestors())), element)]
    return "/" + "/".join(names)


_BASE64 = re.compile(r"\A[A-Za-z0-9+/\s]+={0,2}\s*\Z")
_HEX = re.compile(r"\A\s*(?:[0-9a-fA-F]{2})+\s*\Z")


def _binary(text: str | None) -> tuple[bytes, str] | None:
    """The octets of base64 or hex text of at least 8 octets, and which encoding it was."""
    value = (text or "").strip()
    if len(value) < 12:
        return None
    if _HEX.match(value):
        return bytes.fromhex(value), "hex"
    if _BASE64.match(value) and len(re.sub(r"\s", "", value)) % 4 == 0:
        try:
            octets = base64.b64decode(value)
        except binascii.Error:
            return None
        return (octets, "base64") if len(octets) >= 8 else None
    return None


def _remove_keeping_tail(node: etree._Element) -> None:
    parent = node.getparent()
    assert parent is not None
    if node.tail:
        previous = node.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)


def _namespaces(root: etree._Element) -> set[str]:
    found: set[str] = set()
    for element in _elements(root):
        found.update(uri for uri in element.nsmap.values())
    return found


def _unqualified(root: etree._Element) -> bool:
    return any(etree.QName(e).namespace is None for e in _elements(root))


def _renamespaced(root: etree._Element, mapping: dict[str, str | None]) -> etree._Element:
    """A copy of ``root`` declaring every namespace once, at the top, with new prefixes.

    QName-valued attributes (``xsi:type``) are rewritten for the new prefixes, or the
    rename would change their meaning: that is the part a naive rename gets wrong.
    """
    nsmap = {prefix: uri for uri, prefix in mapping.items()}
    prefix_of = {uri: prefix for uri, prefix in mapping.items()}

    def qname_value(element: etree._Element, value: str) -> str:
        prefix, _, local = value.rpartition(":")
        uri = element.nsmap.get(prefix or None)
        if uri is None or uri not in prefix_of:
            return value
        new = prefix_of[uri]
        return f"{new}:{local}" if new else local

    def copy_into(source: etree._Element, parent: etree._Element | None) -> etree._Element:
        if parent is None:
            made = etree.Element(source.tag, nsmap=nsmap)  # type: ignore[arg-type]
        else:
            made = etree.SubElement(parent, source.tag)
        for name, value in source.attrib.items():
            made.set(name, qname_value(source, value) if name == f"{{{XSI}}}type" else value)
        made.text, made.tail = source.text, source.tail
        for child in source:
            if isinstance(child.tag, str):
                copy_into(child, made)
            else:
                made.append(copy.deepcopy(child))
        return made

    return copy_into(root, None)
