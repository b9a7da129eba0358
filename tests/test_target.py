"""Target files: a good one loads; each kind of mistake is one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.target.file import TargetFileError, load_target

GOOD = """
[target]
base_url = "https://127.0.0.1:8443/keymanagement/identity/v1/"
timeout_s = 5

[profile]
release = "ts33180-r17"

[pics]
encryption = "message"
signing = true
ink = true

[pixit]
kms_uri = "kms.example.org"
lookup = [{ sip_uri = "sip:bob@partner.example", kms_uri = "kms.partner.example" }]

[[users]]
uri = "sip:alice@example.org"
token = "header.payload.sig"

[[users]]
uri = "sip:bob@example.org"
token_env = "BOB_TOKEN"

[keys]
trk_id = "dHJrLTE="
trk = "000102030405060708090a0b0c0d0e0f"
ink_id = "aW5rLTE="
ink_env = "ALICE_INK"

[tokens]
expired = "e.x.p"
"""

INK_HEX = "11" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "target.toml"
    path.write_text(text)
    return path


def test_good_file_loads_with_keys_for_the_first_user(tmp_path: Path) -> None:
    target = load_target(write(tmp_path, GOOD), {"BOB_TOKEN": "bob.tok.en", "ALICE_INK": INK_HEX})
    assert target.target.base_url.endswith("/identity/v1")
    assert target.pics.encryption == "message" and target.pics.ink
    alice, bob = target.users
    assert alice.trk is not None and alice.trk.key_id == b"trk-1"
    assert alice.ink is not None and alice.ink.key.reveal() == bytes.fromhex(INK_HEX)
    assert bob.token is not None and bob.token.text() == "bob.tok.en"
    assert bob.trk is None
    assert target.pixit.lookup[0].kms_uri == "kms.partner.example"
    assert target.tokens.expired is not None


def test_secrets_never_show_in_repr_or_summary(tmp_path: Path) -> None:
    target = load_target(write(tmp_path, GOOD), {"BOB_TOKEN": "bob.tok.en", "ALICE_INK": INK_HEX})
    text = repr(target) + str(target.public_summary())
    for secret in ("header.payload.sig", "bob.tok.en", INK_HEX, "000102030405060708090a0b0c0d0e0f"):
        assert secret not in text


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (("timeout_s = 5", "timeout_s = 5\ntimeout = 3"), "target.timeout", "unknown key"),
        (("timeout_s = 5", 'timeout_s = "five"'), "target.timeout_s", "must be a number"),
        (("signing = true", 'signing = "yes"'), "pics.signing", "must be true or false"),
        (('encryption = "message"', 'encryption = "all"'), "pics.encryption", "not one of"),
        (('uri = "sip:alice@example.org"\n', ""), "users[0].uri", "missing required"),
        (('trk_id = "dHJrLTE="', 'trk_id = "***"'), "users[0].trk_id", "not valid base64"),
        (('trk = "0001', 'trk = "zz01'), "users[0].trk", "not valid hex"),
        (('release = "ts33180-r17"', 'release = "ts33180-r17"\n[bogus]'), "bogus", "unknown key"),
        (('base_url = "https:', 'base_url = "ftp:'), "target.base_url", "not an http(s) URL"),
    ],
)
def test_each_mistake_names_the_key(
    tmp_path: Path, edit: tuple[str, str], key: str, problem: str
) -> None:
    path = write(tmp_path, GOOD.replace(*edit, 1))
    with pytest.raises(TargetFileError) as info:
        load_target(path, {"BOB_TOKEN": "t", "ALICE_INK": INK_HEX})
    message = str(info.value)
    assert message.startswith(str(path))
    assert key in message and problem in message
    assert "\n" not in message


def test_missing_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(TargetFileError, match="BOB_TOKEN is not set"):
        load_target(write(tmp_path, GOOD), {"ALICE_INK": INK_HEX})


def test_missing_ca_file_is_named(tmp_path: Path) -> None:
    text = GOOD.replace("timeout_s = 5", 'timeout_s = 5\nca_file = "nowhere/ca.pem"')
    with pytest.raises(TargetFileError, match=r"target\.ca_file: file not found"):
        load_target(write(tmp_path, text), {"BOB_TOKEN": "t", "ALICE_INK": INK_HEX})


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TargetFileError, match="not valid TOML"):
        load_target(write(tmp_path, "[target\n"))
    with pytest.raises(TargetFileError, match="cannot read the file"):
        load_target(tmp_path / "absent.toml")


def test_token_from_a_command(tmp_path: Path) -> None:
    text = GOOD.replace('token_env = "BOB_TOKEN"', "token_command = \"printf 'from.cmd.tok'\"")
    target = load_target(write(tmp_path, text), {"ALICE_INK": INK_HEX})
    assert target.users[1].token is not None
    assert target.users[1].token.text() == "from.cmd.tok"
