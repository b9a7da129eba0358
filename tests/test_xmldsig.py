"""HMAC-SHA256 XML Signature: profile, failure reasons, cross-checks with libxmlsec1."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable

import pytest
import xmlsec_helper
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from conformance.crypto.errors import CryptoError, InvalidEncoding, UnsupportedAlgorithm
from conformance.xmlsec import xmldsig
from conformance.xmlsec.xmldsig import VerificationReason as Reason

INK = bytes(range(32))
TRK = bytes(range(100, 116))
INK_ID = b"ink.12.user@example.org"
NS_3GPP = "urn:3gpp:ns:mcsecKMSInterface:1.0"
DS = xmldsig.DS_NS

Mutation = Callable[[etree._Element], None]

SIGNED_RESPONSE = f"""<SignedKmsResponse xmlns="{NS_3GPP}" xmlns:se="urn:example:ext"
 xml:lang="en"><KmsResponse Id="xmldoc" Version="1.1.0">
<UserUri>sip:user@example.org</UserUri><!-- not covered by the digest -->
<KmsMessage><KmsInit><se:Ext a="1">x &amp; y</se:Ext><KmsCertificate>certificate</KmsCertificate>
</KmsInit></KmsMessage></KmsResponse></SignedKmsResponse>""".encode()

# The Rel-13 (Kapsch) shape: the wrapper is referenced and holds the Signature.
ENVELOPED_RESPONSE = f"""<SignedKmsResponse xmlns="{NS_3GPP}" Id="wrapper"><KmsResponse>
<KmsMessage><KmsInit>content</KmsInit></KmsMessage></KmsResponse>tail</SignedKmsResponse>""".encode()


def parse(document: bytes) -> etree._Element:
    return etree.fromstring(
        document, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    )


def kms_response(document: bytes = SIGNED_RESPONSE) -> etree._Element:
    found = parse(document).find(f"{{{NS_3GPP}}}KmsResponse")
    assert found is not None
    return found


def signed_response(key: bytes = INK, **options: object) -> etree._Element:
    """A SignedKmsResponse signed here; returns its ds:Signature."""
    return xmldsig.sign(kms_response(), key, INK_ID, **options)  # type: ignore[arg-type]


def ds(path: str) -> str:
    return "/".join(f"{{{DS}}}{name}" for name in path.split("/"))


def child(parent: etree._Element, path: str) -> etree._Element:
    found = parent.find(ds(path))
    assert found is not None
    return found


def first_text(element: etree._Element) -> etree._Element:
    """The first element below ``element`` with non-blank text."""
    for node in element.iter():
        if isinstance(node.tag, str) and node.text and node.text.strip():
            return node
    raise AssertionError("no text")


# --- signing and the SignedKmsResponse shape ----------------------------------------------


def test_sign_appends_the_signature_after_the_kms_response() -> None:
    signature = signed_response()
    wrapper = signature.getparent()
    assert wrapper is not None
    assert [etree.QName(node).localname for node in wrapper] == ["KmsResponse", "Signature"]
    assert child(signature, "SignedInfo/Reference").get("URI") == "#xmldoc"
    assert child(signature, "SignedInfo/Reference").find(ds("Transforms")) is None
    algorithms = [
        child(signature, f"SignedInfo/{name}").get("Algorithm")
        for name in ("CanonicalizationMethod", "SignatureMethod", "Reference/DigestMethod")
    ]
    assert algorithms == [xmldsig.C14N_10, xmldsig.HMAC_SHA256, xmldsig.SHA256]
    assert child(signature, "KeyInfo/KeyName").text == base64.b64encode(INK_ID).decode()
    assert len(base64.b64decode(child(signature, "SignatureValue").text or "")) == 32


def test_round_trip_says_which_element_is_signed_and_what_is_covered() -> None:
    signature = signed_response()
    result = xmldsig.verify(signature, INK)
    assert (result.ok, result.reason) == (True, Reason.OK)
    assert result.key_name == base64.b64encode(INK_ID).decode()
    response = result.signed_element
    assert response is not None and response.get("Id") == "xmldoc"
    message = response.find(f"{{{NS_3GPP}}}KmsMessage")
    assert message is not None
    assert xmldsig.signature_covers(result, message)
    assert not xmldsig.signature_covers(result, signature)
    assert not xmldsig.signature_covers(xmldsig.verify(signature, TRK), message)


def test_an_element_without_id_gets_one() -> None:
    response = kms_response()
    del response.attrib["Id"]
    signature = xmldsig.sign(response, INK, INK_ID, id_value="resp-1")
    assert response.get("Id") == "resp-1"
    assert xmldsig.verify(signature, INK).ok

    generated = kms_response()
    del generated.attrib["Id"]
    signature = xmldsig.sign(generated, INK, INK_ID)
    assert child(signature, "SignedInfo/Reference").get("URI") == "#" + generated.get("Id", "")
    assert xmldsig.verify(signature, INK).ok


def test_an_existing_id_or_lowercase_id_is_used() -> None:
    response = kms_response()
    del response.attrib["Id"]
    response.set("id", "lower")
    signature = xmldsig.sign(response, INK, INK_ID)
    assert child(signature, "SignedInfo/Reference").get("URI") == "#lower"
    assert xmldsig.verify(signature, INK).ok
    with pytest.raises(CryptoError, match="already"):
        xmldsig.sign(kms_response(), INK, INK_ID, id_value="other")


def test_enveloped_signature_when_the_signature_lands_inside_the_signed_element() -> None:
    wrapper = parse(ENVELOPED_RESPONSE)
    signature = xmldsig.sign(wrapper, TRK, b"trk", parent=wrapper)
    transform = child(signature, "SignedInfo/Reference/Transforms/Transform")
    assert transform.get("Algorithm") == xmldsig.ENVELOPED_SIGNATURE
    result = xmldsig.verify(signature, TRK)
    assert result.ok and result.signed_element is wrapper
    assert xmldsig.signature_covers(result, wrapper[0])
    assert not xmldsig.signature_covers(result, child(signature, "SignedInfo"))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"signature_method": "http://www.w3.org/2000/09/xmldsig#rsa-sha1"}, UnsupportedAlgorithm),
        ({"digest_method": "http://example.org/md5"}, UnsupportedAlgorithm),
        ({"c14n_method": "http://www.w3.org/2001/10/xml-exc-c14n#"}, UnsupportedAlgorithm),
        ({"hmac_output_length": 100}, InvalidEncoding),
        ({"hmac_output_length": 512}, InvalidEncoding),
        ({"whole_document": True}, CryptoError),
    ],
)
def test_sign_rejects_what_it_cannot_produce(options: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        signed_response(**options)


def test_sign_rejects_an_empty_key_and_a_root_without_parent() -> None:
    with pytest.raises(InvalidEncoding):
        signed_response(key=b"")
    with pytest.raises(CryptoError, match="parent"):
        xmldsig.sign(parse(SIGNED_RESPONSE), INK, INK_ID)


# --- each failure reason ------------------------------------------------------------------


def test_digest_mismatch_when_signed_content_changes() -> None:
    signature = signed_response()
    response = signature.getparent()
    assert response is not None
    first_text(response[0]).text = "sip:mallory@example.org"
    result = xmldsig.verify(signature, INK)
    assert (result.ok, result.reason) == (False, Reason.DIGEST_MISMATCH)
    assert "#xmldoc" in result.message


def test_signature_mismatch_with_the_wrong_key() -> None:
    result = xmldsig.verify(signed_response(), TRK)
    assert result.reason == Reason.SIGNATURE_MISMATCH
    assert result.key_name == base64.b64encode(INK_ID).decode()


def test_reference_not_found() -> None:
    signature = signed_response()
    child(signature, "SignedInfo/Reference").set("URI", "#absent")
    assert xmldsig.verify(signature, INK).reason == Reason.REFERENCE_NOT_FOUND
    child(signature, "SignedInfo/Reference").set("URI", "http://example.org/doc")
    assert xmldsig.verify(signature, INK).reason == Reason.REFERENCE_NOT_FOUND


@pytest.mark.parametrize(
    "options",
    [
        {"signature_method": xmldsig.HMAC_SHA1},
        {"signature_method": xmldsig.HMAC_SHA512},
        {"digest_method": xmldsig.SHA1},
        {"digest_method": xmldsig.SHA512},
    ],
)
def test_wrong_algorithm_from_a_non_profile_signer(options: dict[str, str]) -> None:
    result = xmldsig.verify(signed_response(**options), INK)
    assert result.reason == Reason.WRONG_ALGORITHM
    assert next(iter(options.values())) in result.message


@pytest.mark.parametrize(
    ("path", "algorithm"),
    [
        ("SignedInfo/CanonicalizationMethod", "http://www.w3.org/2001/10/xml-exc-c14n#"),
        ("SignedInfo/CanonicalizationMethod", "http://www.w3.org/2006/12/xml-c14n11"),
    ],
)
def test_wrong_canonicalization_algorithm(path: str, algorithm: str) -> None:
    signature = signed_response()
    child(signature, path).set("Algorithm", algorithm)
    assert xmldsig.verify(signature, INK).reason == Reason.WRONG_ALGORITHM


def test_wrong_transform_algorithm() -> None:
    signature = signed_response()
    reference = child(signature, "SignedInfo/Reference")
    transforms = etree.Element(f"{{{DS}}}Transforms")
    etree.SubElement(
        transforms, f"{{{DS}}}Transform", Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"
    )
    reference.insert(0, transforms)
    assert xmldsig.verify(signature, INK).reason == Reason.WRONG_ALGORITHM


def test_truncated_hmac_declared_or_not() -> None:
    result = xmldsig.verify(signed_response(hmac_output_length=128), INK)
    assert result.reason == Reason.TRUNCATED_HMAC
    assert "128" in result.message

    signature = signed_response()
    value = child(signature, "SignatureValue")
    value.text = base64.b64encode(base64.b64decode(value.text or "")[:16]).decode()
    assert xmldsig.verify(signature, INK).reason == Reason.TRUNCATED_HMAC


def test_hmac_output_length_256_is_the_profile() -> None:
    assert xmldsig.verify(signed_response(hmac_output_length=256), INK).ok


def remove(path: str) -> Mutation:
    def mutate(signature: etree._Element) -> None:
        target = child(signature, path)
        parent = target.getparent()
        assert parent is not None
        parent.remove(target)

    return mutate


def set_text(path: str, text: str) -> Mutation:
    def mutate(signature: etree._Element) -> None:
        child(signature, path).text = text

    return mutate


def duplicate(path: str) -> Mutation:
    def mutate(signature: etree._Element) -> None:
        target = child(signature, path)
        target.addnext(copy.deepcopy(target))

    return mutate


def drop_attribute(path: str, name: str) -> Mutation:
    def mutate(signature: etree._Element) -> None:
        del child(signature, path).attrib[name]

    return mutate


def wrap_duplicate_id(signature: etree._Element) -> None:
    # Signature wrapping: a second element with the signed Id appears elsewhere.
    response = signature.getprevious()
    assert response is not None
    forged = copy.deepcopy(response)
    first_text(forged).text = "sip:mallory@example.org"
    signature.addnext(forged)


def c14n_before_enveloped(signature: etree._Element) -> None:
    reference = child(signature, "SignedInfo/Reference")
    transforms = etree.Element(f"{{{DS}}}Transforms")
    for algorithm in (xmldsig.C14N_10, xmldsig.ENVELOPED_SIGNATURE):
        etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=algorithm)
    reference.insert(0, transforms)


@pytest.mark.parametrize(
    "mutate",
    [
        remove("SignedInfo"),
        remove("SignatureValue"),
        remove("SignedInfo/SignatureMethod"),
        remove("SignedInfo/Reference"),
        remove("SignedInfo/Reference/DigestValue"),
        duplicate("SignedInfo/Reference"),
        duplicate("SignatureValue"),
        set_text("SignatureValue", "!!not base64!!"),
        set_text("SignedInfo/Reference/DigestValue", "AAAA"),
        drop_attribute("SignedInfo/Reference", "URI"),
        drop_attribute("SignedInfo/SignatureMethod", "Algorithm"),
        wrap_duplicate_id,
        c14n_before_enveloped,
    ],
)
def test_malformed(mutate: Mutation) -> None:
    signature = signed_response()
    mutate(signature)
    result = xmldsig.verify(signature, INK)
    assert (result.ok, result.reason) == (False, Reason.MALFORMED)
    assert result.message and "\n" not in result.message


@pytest.mark.parametrize("length", ["abc", "", "300", "256 256"])
def test_malformed_hmac_output_length(length: str) -> None:
    signature = signed_response()
    method = child(signature, "SignedInfo/SignatureMethod")
    etree.SubElement(method, f"{{{DS}}}HMACOutputLength").text = length
    assert xmldsig.verify(signature, INK).reason == Reason.MALFORMED


def test_an_element_that_is_not_a_signature_is_malformed() -> None:
    result = xmldsig.verify(kms_response(), INK)
    assert result.reason == Reason.MALFORMED and result.key_name is None


# --- cross-checks with libxmlsec1 ---------------------------------------------------------

NESTED = f"""<outer:Envelope xmlns:outer="urn:example:outer" xmlns="{NS_3GPP}"
 xmlns:unused="urn:example:unused" xml:lang="fr" xml:space="preserve"><Body>
<SignedKmsResponse><KmsResponse Id="deep" xmlns:se="urn:example:ext"><!-- comment -->
<se:Ext se:flag="1">text&#13;</se:Ext><Plain xmlns="">no namespace</Plain>
<KmsMessage><KmsInit>content</KmsInit></KmsMessage></KmsResponse></SignedKmsResponse>
</Body></outer:Envelope>""".encode()

# The signed element undeclares the default namespace and inherits xml:base (which
# Canonical XML 1.0, unlike 1.1, copies onto the apex of a subset).
UNDECLARED = b"""<a:Root xmlns:a="urn:example:a" xmlns="urn:example:d" xml:base="http://x/"><Wrap>
<KmsResponse xmlns="" Id="plain"><q xmlns="urn:example:d">x</q><KmsMessage>m</KmsMessage>
</KmsResponse></Wrap></a:Root>"""

DOCUMENTS = {
    "signed-response": SIGNED_RESPONSE,
    "nested-with-namespaces": NESTED,
    "undeclared-default-namespace": UNDECLARED,
}


@pytest.mark.xmlsec
@pytest.mark.parametrize("document", DOCUMENTS.values(), ids=DOCUMENTS.keys())
@pytest.mark.parametrize("c14n", [xmldsig.C14N_10, xmldsig.C14N_10_WITH_COMMENTS])
@pytest.mark.parametrize("key", [INK, TRK], ids=["ink-256", "trk-128"])
def test_libxmlsec1_verifies_what_we_sign(document: bytes, c14n: str, key: bytes) -> None:
    response = kms_response_in(document)
    signature = xmldsig.sign(response, key, INK_ID, c14n_method=c14n)
    assert xmlsec_helper.verify(signature, key, response)
    assert not xmlsec_helper.verify(signature, bytes(len(key)), response)


@pytest.mark.xmlsec
@pytest.mark.parametrize("document", DOCUMENTS.values(), ids=DOCUMENTS.keys())
@pytest.mark.parametrize("c14n", [xmldsig.C14N_10, xmldsig.C14N_10_WITH_COMMENTS])
@pytest.mark.parametrize("prefix", ["ds", "dsig", None], ids=["ds", "dsig", "default-ns"])
def test_we_verify_what_libxmlsec1_signs(document: bytes, c14n: str, prefix: str | None) -> None:
    signed = xmlsec_helper.sign(kms_response_in(document), INK, "aW5r", c14n=c14n, prefix=prefix)
    signature, response = received(signed)
    result = xmldsig.verify(signature, INK)
    assert (result.reason, result.signed_element, result.key_name) == (
        Reason.OK,
        response,
        "aW5r",
    )
    first_text(response[-1]).text = "changed"
    assert xmldsig.verify(signature, INK).reason == Reason.DIGEST_MISMATCH


@pytest.mark.xmlsec
def test_enveloped_both_ways_with_libxmlsec1() -> None:
    wrapper = parse(ENVELOPED_RESPONSE)
    signature = xmldsig.sign(wrapper, TRK, b"trk", parent=wrapper)
    assert xmlsec_helper.verify(signature, TRK, wrapper)

    wrapper = parse(ENVELOPED_RESPONSE)
    signature, signed = received(
        xmlsec_helper.sign(wrapper, TRK, "dHJr", parent=wrapper, enveloped=True)
    )
    result = xmldsig.verify(signature, TRK)
    assert result.ok and result.signed_element is signed
    assert xmldsig.signature_covers(result, signed[0])


@pytest.mark.xmlsec
def test_whole_document_reference_both_ways_with_libxmlsec1() -> None:
    document = b"<?keep this?>" + ENVELOPED_RESPONSE.replace(b' Id="wrapper"', b"")
    root = parse(document)
    signature = xmldsig.sign(root, TRK, b"trk", parent=root, whole_document=True)
    assert child(signature, "SignedInfo/Reference").get("URI") == ""
    assert xmlsec_helper.verify(signature, TRK, root)

    root = parse(document)
    signature, root = received(
        xmlsec_helper.sign(root, TRK, "dHJr", parent=root, enveloped=True, uri="")
    )
    assert xmldsig.verify(signature, TRK).ok
    # URI="" covers the processing instruction before the document element.
    instruction = root.getprevious()
    assert instruction is not None
    instruction.text = "changed"
    assert xmldsig.verify(signature, TRK).reason == Reason.DIGEST_MISMATCH


def kms_response_in(document: bytes) -> etree._Element:
    found = parse(document).find(".//*[@Id]")
    assert found is not None
    return found


def received(document: bytes) -> tuple[etree._Element, etree._Element]:
    """The ds:Signature and the element it names, from a signed document as sent."""
    root = parse(document)
    signature = root.find(f".//{{{DS}}}Signature")
    assert signature is not None
    uri = child(signature, "SignedInfo/Reference").get("URI", "")
    signed = root.find(f".//*[@Id='{uri[1:]}']") if uri else root
    if signed is None and root.get("Id") == uri[1:]:
        signed = root
    assert signed is not None
    return signature, signed


# --- properties ---------------------------------------------------------------------------

xml_text = st.text(
    st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc", "Cn"), include_characters="\t\n\r"
    ),
    max_size=40,
)


@pytest.mark.xmlsec
@settings(max_examples=40, deadline=None)
@given(text=xml_text, attribute=xml_text)
def test_libxmlsec1_verifies_any_content_we_sign(text: str, attribute: str) -> None:
    response = kms_response_in(NESTED)
    item = etree.SubElement(response, f"{{{NS_3GPP}}}Item", note=attribute)
    item.text = text
    signature = xmldsig.sign(response, INK, INK_ID)
    assert xmldsig.verify(signature, INK).ok
    assert xmlsec_helper.verify(signature, INK, response)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_bit_flip_in_the_signature_value_is_a_signature_mismatch(data: st.DataObject) -> None:
    signature = signed_response()
    value = child(signature, "SignatureValue")
    octets = bytearray(base64.b64decode(value.text or ""))
    bit = data.draw(st.integers(0, len(octets) * 8 - 1))
    octets[bit // 8] ^= 1 << (bit % 8)
    value.text = base64.b64encode(octets).decode()
    assert xmldsig.verify(signature, INK).reason == Reason.SIGNATURE_MISMATCH


@settings(max_examples=60, deadline=None)
@given(text=st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=30), data=st.data())
def test_any_bit_flip_in_signed_text_is_a_digest_mismatch(text: str, data: st.DataObject) -> None:
    response = kms_response()
    target = first_text(response)
    target.text = text
    signature = xmldsig.sign(response, INK, INK_ID)
    position = data.draw(st.integers(0, len(text) - 1))
    # Bits 0-5 of a lower-case letter keep it a character XML allows.
    flipped = chr(ord(text[position]) ^ (1 << data.draw(st.integers(0, 5))))
    target.text = text[:position] + flipped + text[position + 1 :]
    assert xmldsig.verify(signature, INK).reason == Reason.DIGEST_MISMATCH


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_verify_never_raises_on_a_damaged_signature(data: st.DataObject) -> None:
    signature = signed_response()
    nodes = [node for node in signature.iter() if isinstance(node.tag, str)]
    node = data.draw(st.sampled_from(nodes))
    action = data.draw(st.sampled_from(["remove", "text", "attribute", "retag"]))
    value = data.draw(xml_text)
    if action == "remove" and node is not signature:
        parent = node.getparent()
        assert parent is not None
        parent.remove(node)
    elif action == "text":
        node.text = value
    elif action == "attribute":
        node.set(data.draw(st.sampled_from(["Algorithm", "URI", "Id"])), value)
    else:
        node.tag = f"{{{DS}}}{data.draw(st.sampled_from(['Reference', 'Transform', 'Other']))}"
    result = xmldsig.verify(signature, INK)
    assert isinstance(result.reason, Reason)
    assert result.ok == (result.reason == Reason.OK)
