"""XML Encryption 1.1: AES-GCM content encryption and key wrap, cross-checked with libxmlsec1."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import xmlsec_helper
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from conformance.crypto.errors import DecryptionError, InvalidEncoding, UnsupportedAlgorithm
from conformance.xmlsec import xmldsig, xmlenc

TRK = bytes(range(16))
TRK_ID = b"\x01trk-2024"
NS_3GPP = "urn:3gpp:ns:mcsecKMSInterface:1.0"
KEYWRAP_VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "xmlsec" / "keywrap.json").read_text()
)["vectors"]

RESPONSE = f"""<SignedKmsResponse xmlns="{NS_3GPP}" xmlns:se="urn:example:ext">
<KmsResponse Id="resp"><KmsMessage><KmsInit Version="1.1.0"><se:Ext a="1">x &amp; y</se:Ext>
<KmsCertificate>certificate</KmsCertificate></KmsInit></KmsMessage></KmsResponse>
</SignedKmsResponse>""".encode()


def hardened_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def kms_message(document: bytes = RESPONSE) -> etree._Element:
    root = etree.fromstring(document, hardened_parser())
    found = root.find(f".//{{{NS_3GPP}}}KmsMessage")
    assert found is not None
    return found


def canonical(element: etree._Element) -> bytes:
    # lxml's own subtree c14n emits spurious xmlns="" on children of a nested element.
    return xmldsig.canonical_subset(element, with_comments=True)


def with_cipher_value(encrypted_data: etree._Element, text: str) -> etree._Element:
    value = encrypted_data.find(f".//{{{xmlenc.XENC_NS}}}CipherValue")
    assert value is not None
    value.text = text
    return encrypted_data


# --- content encryption -------------------------------------------------------------------


def test_encrypt_content_replaces_the_content_with_one_encrypted_data() -> None:
    message = kms_message()
    plaintext_size = sum(len(etree.tostring(child)) for child in message)
    encrypted_data = xmlenc.encrypt_content(message, TRK, TRK_ID)

    assert list(message) == [encrypted_data]
    assert message.text is None
    info = xmlenc.parse_encrypted_data(encrypted_data)
    assert info.type == "http://www.w3.org/2001/04/xmlenc#Content"
    assert info.algorithm == "http://www.w3.org/2009/xmlenc11#aes128-gcm"
    assert info.key_name == base64.b64encode(TRK_ID).decode()
    assert info.key_id() == TRK_ID
    assert len(info.cipher_octets()) == 12 + plaintext_size + 16


def test_round_trip_restores_the_message_in_place() -> None:
    message = kms_message()
    before = canonical(message)
    encrypted_data = xmlenc.encrypt_content(message, TRK, TRK_ID)
    plaintext = xmlenc.decrypt_content(encrypted_data, TRK)
    restored = xmlenc.replace_with_plaintext(encrypted_data, plaintext, hardened_parser())
    assert restored is message
    assert canonical(message) == before


def test_fixed_iv_leads_the_cipher_value() -> None:
    iv = bytes.fromhex("cafebabefacedbaddecaf888")
    encrypted_data = xmlenc.encrypt_content(kms_message(), TRK, TRK_ID, iv=iv)
    assert xmlenc.parse_encrypted_data(encrypted_data).cipher_octets()[:12] == iv


def test_parse_plaintext_fragment_resolves_prefixes_declared_only_on_ancestors() -> None:
    # libxmlsec1 serializes content without the declarations in scope at KmsMessage.
    message = kms_message()
    xmlsec_helper.encrypt_content(message, TRK, "dHJr")
    encrypted_data = message[0]
    plaintext = xmlenc.decrypt_content(encrypted_data, TRK)
    assert b"xmlns" not in plaintext

    nodes = xmlenc.parse_plaintext_fragment(encrypted_data, plaintext, hardened_parser())
    elements = [node for node in nodes if isinstance(node.tag, str)]
    assert [element.tag for element in elements] == [f"{{{NS_3GPP}}}KmsInit"]
    assert elements[0].find("{urn:example:ext}Ext") is not None


@pytest.mark.parametrize(
    "plaintext",
    [
        b"<KmsInit>",  # unclosed
        b"</fragment><x/><fragment>",  # tries to close the wrapper
        b"<KmsInit>&ext;</KmsInit>",  # entity never declared
        b"<undeclared:KmsInit/>",  # prefix in scope nowhere
        b"\xff\xfe",  # not UTF-8
    ],
)
def test_a_plaintext_that_is_not_a_fragment_is_invalid_encoding(plaintext: bytes) -> None:
    message = kms_message()
    encrypted_data = xmlenc.encrypt_content(message, TRK, TRK_ID)
    with pytest.raises(InvalidEncoding):
        xmlenc.parse_plaintext_fragment(encrypted_data, plaintext, hardened_parser())


def test_wrong_key_is_a_decryption_error() -> None:
    encrypted_data = xmlenc.encrypt_content(kms_message(), TRK, TRK_ID)
    with pytest.raises(DecryptionError, match="tag"):
        xmlenc.decrypt_content(encrypted_data, bytes(16))


@pytest.mark.parametrize(
    ("cipher_value", "message"),
    [("not base64!", "base64"), (base64.b64encode(bytes(27)).decode(), "shorter")],
)
def test_bad_cipher_value_is_invalid_encoding(cipher_value: str, message: str) -> None:
    encrypted_data = xmlenc.encrypt_content(kms_message(), TRK, TRK_ID)
    with pytest.raises(InvalidEncoding, match=message):
        xmlenc.decrypt_content(with_cipher_value(encrypted_data, cipher_value), TRK)


def test_cipher_value_with_line_breaks_decrypts() -> None:
    encrypted_data = xmlenc.encrypt_content(kms_message(), TRK, TRK_ID)
    text = xmlenc.parse_encrypted_data(encrypted_data).cipher_value or ""
    wrapped = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    plaintext = xmlenc.decrypt_content(with_cipher_value(encrypted_data, f"\n{wrapped}\n"), TRK)
    assert b"KmsInit" in plaintext


@pytest.mark.parametrize(
    ("attribute", "value", "error"),
    [
        ("Algorithm", "http://www.w3.org/2001/04/xmlenc#aes128-cbc", UnsupportedAlgorithm),
        ("Type", "http://www.w3.org/2001/04/xmlenc#Element", UnsupportedAlgorithm),
    ],
)
def test_unsupported_algorithm_or_type_is_refused_before_decrypting(
    attribute: str, value: str, error: type[Exception]
) -> None:
    encrypted_data = xmlenc.encrypt_content(kms_message(), TRK, TRK_ID)
    target = encrypted_data if attribute == "Type" else encrypted_data[0]
    target.set(attribute, value)
    with_cipher_value(encrypted_data, "garbage that is never decoded")
    with pytest.raises(error, match=value.rpartition("#")[2]):
        xmlenc.decrypt_content(encrypted_data, TRK)


def test_missing_type_is_accepted_and_reported() -> None:
    encrypted_data = xmlenc.encrypt_content(kms_message(), TRK, TRK_ID)
    del encrypted_data.attrib["Type"]
    assert xmlenc.parse_encrypted_data(encrypted_data).type is None
    assert b"KmsInit" in xmlenc.decrypt_content(encrypted_data, TRK)


def test_cipher_reference_is_unsupported() -> None:
    encrypted_data = xmlenc.encrypt_content(kms_message(), TRK, TRK_ID)
    cipher_data = encrypted_data.find(f"{{{xmlenc.XENC_NS}}}CipherData")
    assert cipher_data is not None
    cipher_data.clear()
    etree.SubElement(cipher_data, f"{{{xmlenc.XENC_NS}}}CipherReference", URI="http://x/")
    with pytest.raises(UnsupportedAlgorithm, match="CipherReference"):
        xmlenc.decrypt_content(encrypted_data, TRK)


@pytest.mark.parametrize(
    ("key", "iv", "key_id"),
    [(bytes(32), None, TRK_ID), (TRK, bytes(16), TRK_ID), (TRK, None, b"")],
)
def test_encrypt_rejects_wrong_lengths(key: bytes, iv: bytes | None, key_id: bytes) -> None:
    message = kms_message()
    before = canonical(message)
    with pytest.raises(InvalidEncoding):
        xmlenc.encrypt_content(message, key, key_id, iv=iv)
    assert canonical(message) == before


def test_decrypt_with_a_key_of_the_wrong_length_is_invalid_encoding() -> None:
    encrypted_data = xmlenc.encrypt_content(kms_message(), TRK, TRK_ID)
    with pytest.raises(InvalidEncoding, match="16 octets"):
        xmlenc.decrypt_content(encrypted_data, bytes(32))


def test_not_an_encrypted_data_element_is_invalid_encoding() -> None:
    with pytest.raises(InvalidEncoding, match="EncryptedData"):
        xmlenc.decrypt_content(kms_message(), TRK)


# --- cross-checks with libxmlsec1 ---------------------------------------------------------


@pytest.mark.xmlsec
def test_libxmlsec1_decrypts_what_we_encrypt() -> None:
    message = kms_message()
    before = canonical(message)
    encrypted_data = xmlenc.encrypt_content(message, TRK, TRK_ID)
    assert xmlsec_helper.decrypt(encrypted_data, TRK) is message
    assert canonical(message) == before


@pytest.mark.xmlsec
@pytest.mark.parametrize("prefix", ["xenc", "e", "enc11"])
def test_we_decrypt_what_libxmlsec1_encrypts(prefix: str) -> None:
    message = kms_message()
    before = canonical(message)
    encrypted_data = xmlsec_helper.encrypt_content(message, TRK, "dHJr", prefix=prefix)
    assert xmlenc.parse_encrypted_data(encrypted_data).algorithm == xmlenc.AES128_GCM
    plaintext = xmlenc.decrypt_content(encrypted_data, TRK)
    xmlenc.replace_with_plaintext(encrypted_data, plaintext, hardened_parser())
    assert canonical(message) == before


@pytest.mark.xmlsec
def test_aes256_gcm_from_libxmlsec1_is_accepted_with_a_256_bit_key() -> None:
    key = bytes(range(32))
    encrypted_data = xmlsec_helper.encrypt_content(
        kms_message(), key, "dHJr", algorithm=xmlenc.AES256_GCM
    )
    assert b"KmsInit" in xmlenc.decrypt_content(encrypted_data, key)
    with pytest.raises(InvalidEncoding, match="32 octets"):
        xmlenc.decrypt_content(encrypted_data, TRK)


# --- key wrap -----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", KEYWRAP_VECTORS, ids=lambda vector: vector["name"])
def test_key_wrap_known_answers(vector: dict[str, str]) -> None:
    kek, key, wrapped = (bytes.fromhex(vector[name]) for name in ("kek", "key", "wrapped"))
    assert xmlenc.wrap_key(kek, key, vector["algorithm"]) == wrapped
    assert xmlenc.unwrap_key(kek, wrapped, vector["algorithm"]) == key


@pytest.mark.parametrize(
    ("algorithm", "kek_octets", "key_octets"),
    [
        (xmlenc.KW_AES128, 16, 32),
        (xmlenc.KW_AES192, 24, 16),
        (xmlenc.KW_AES256, 32, 32),
        (xmlenc.KW_AES128_PAD, 16, 65),
        (xmlenc.KW_AES192_PAD, 24, 1),
        (xmlenc.KW_AES256_PAD, 32, 257),
    ],
)
def test_encrypted_key_round_trip(algorithm: str, kek_octets: int, key_octets: int) -> None:
    kek, key = (
        bytes(range(kek_octets)),
        bytes(range(7, 7 + key_octets % 256)) * (1 + key_octets // 256),
    )
    key = key[:key_octets]
    element = xmlenc.build_encrypted_key(kek, key, b"kek-1", algorithm, carried_key_name="trk-2")
    info = xmlenc.parse_encrypted_key(element)
    assert (info.algorithm, info.key_id(), info.carried_key_name) == (algorithm, b"kek-1", "trk-2")
    assert xmlenc.open_encrypted_key(element, kek) == key


def test_rfc3394_refuses_a_key_that_is_not_a_multiple_of_8_octets() -> None:
    # An RSK (257 octets) or PVT (65 octets) needs the -pad variant.
    with pytest.raises(InvalidEncoding, match="-pad"):
        xmlenc.wrap_key(bytes(32), bytes(65), xmlenc.KW_AES256)


@pytest.mark.parametrize(
    ("kek", "data", "algorithm", "error"),
    [
        (bytes(16), bytes(24), xmlenc.KW_AES256, InvalidEncoding),  # KEK length vs URI
        (bytes(32), bytes(24), xmlenc.KW_AES128_PAD, InvalidEncoding),
        (
            bytes(16),
            bytes(24),
            "http://www.w3.org/2001/04/xmlenc#kw-tripledes",
            UnsupportedAlgorithm,
        ),
        (bytes(16), bytes(20), xmlenc.KW_AES128, InvalidEncoding),  # not a wrap output
        (bytes(16), bytes(8), xmlenc.KW_AES128_PAD, InvalidEncoding),
        (bytes(16), bytes(24), xmlenc.KW_AES128, DecryptionError),  # integrity check fails
        (bytes(16), bytes(24), xmlenc.KW_AES128_PAD, DecryptionError),
    ],
)
def test_unwrap_bad_input(kek: bytes, data: bytes, algorithm: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        xmlenc.unwrap_key(kek, data, algorithm)


def test_wrong_kek_opening_an_encrypted_key_is_a_decryption_error() -> None:
    element = xmlenc.build_encrypted_key(bytes(32), bytes(257), b"k", xmlenc.KW_AES256_PAD)
    with pytest.raises(DecryptionError):
        xmlenc.open_encrypted_key(element, bytes(range(32)))


def test_encrypted_key_without_algorithm_is_unsupported() -> None:
    element = xmlenc.build_encrypted_key(bytes(16), bytes(16), b"k", xmlenc.KW_AES128)
    element.remove(element[0])
    with pytest.raises(UnsupportedAlgorithm):
        xmlenc.open_encrypted_key(element, bytes(16))


@pytest.mark.xmlsec
def test_libxmlsec1_opens_our_rfc3394_encrypted_key() -> None:
    kek, key = bytes(range(16)), bytes(range(100, 132))
    element = xmlenc.build_encrypted_key(kek, key, b"kek", xmlenc.KW_AES128)
    assert xmlsec_helper.decrypt(element, kek) == key


@pytest.mark.xmlsec
def test_we_open_libxmlsec1_rfc3394_encrypted_key() -> None:
    kek, key = bytes(range(16)), bytes(range(100, 132))
    element = xmlsec_helper.wrap_key_rfc3394(kek, key, "a2Vr")
    assert xmlenc.open_encrypted_key(element, kek) == key


# --- properties ---------------------------------------------------------------------------

xml_text = st.text(
    st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc", "Cn"), include_characters="\t\n\r"
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(lead=xml_text, inner=xml_text, tail=xml_text, attribute=xml_text)
def test_any_content_round_trips(lead: str, inner: str, tail: str, attribute: str) -> None:
    message = kms_message()
    message.text = lead
    child = etree.SubElement(message, "{urn:example:ext}Item", value=attribute)
    child.text, child.tail = inner, tail
    before = canonical(message)
    encrypted_data = xmlenc.encrypt_content(message, TRK, TRK_ID)
    plaintext = xmlenc.decrypt_content(encrypted_data, TRK)
    xmlenc.replace_with_plaintext(encrypted_data, plaintext, hardened_parser())
    assert canonical(message) == before


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_bit_flip_in_the_cipher_value_is_a_decryption_error(data: st.DataObject) -> None:
    encrypted_data = xmlenc.encrypt_content(kms_message(), TRK, TRK_ID)
    octets = bytearray(xmlenc.parse_encrypted_data(encrypted_data).cipher_octets())
    bit = data.draw(st.integers(0, len(octets) * 8 - 1))
    octets[bit // 8] ^= 1 << (bit % 8)
    with_cipher_value(encrypted_data, base64.b64encode(octets).decode())
    with pytest.raises(DecryptionError):
        xmlenc.decrypt_content(encrypted_data, TRK)
