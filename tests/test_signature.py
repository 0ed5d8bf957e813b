"""Sender signatures as pure functions: Standard Webhooks and GitHub, and finding a secret in a file.

Signatures are computed here independently (hmac + base64, as the schemes' documents describe), so a
test checks the scheme, not our own helper against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

import pytest

from controller.drivers import load_drivers
from controller.listener.signature import (
    SignatureError,
    SignatureSecrets,
    verify_github,
    verify_standard_webhooks,
)
from controller.manifest import SignatureSpec
from controller.model import Receiver
from tests.specs import receiver_spec

NOW = 1_800_000_000
KEY = b"0123456789abcdef0123456789abcdef"
WHSEC = b"whsec_" + base64.b64encode(KEY)
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
BODY = b'{"type":"push","data":{"ref":"main"}}'


def v1(key: bytes, msg_id: str = MSG_ID, timestamp: int = NOW, body: bytes = BODY) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def github(secret: bytes, body: bytes = BODY) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def code_of(excinfo: pytest.ExceptionInfo[SignatureError]) -> tuple[int, str]:
    return excinfo.value.status, excinfo.value.code


# -- Standard Webhooks


def test_a_valid_v1_signature_passes() -> None:
    verify_standard_webhooks(WHSEC, MSG_ID, str(NOW), v1(KEY), BODY, NOW)


def test_one_valid_signature_among_several_passes_for_rotation() -> None:
    header = f"{v1(b'old-key-no-longer-used')} {v1(KEY)}"
    verify_standard_webhooks(WHSEC, MSG_ID, str(NOW), header, BODY, NOW)


def test_a_signature_made_with_another_secret_is_invalid() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(WHSEC, MSG_ID, str(NOW), v1(b"another secret"), BODY, NOW)
    assert code_of(excinfo) == (401, "signature_invalid")


def test_a_tampered_body_is_invalid() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(WHSEC, MSG_ID, str(NOW), v1(KEY), BODY.replace(b"main", b"evil"), NOW)
    assert code_of(excinfo) == (401, "signature_invalid")


def test_a_changed_message_id_is_invalid() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(WHSEC, "msg_other", str(NOW), v1(KEY), BODY, NOW)
    assert code_of(excinfo) == (401, "signature_invalid")


def test_a_timestamp_more_than_five_minutes_old_is_expired() -> None:
    sent = NOW - 301
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(WHSEC, MSG_ID, str(sent), v1(KEY, timestamp=sent), BODY, NOW)
    assert code_of(excinfo) == (401, "signature_expired")


def test_a_timestamp_more_than_five_minutes_ahead_is_expired() -> None:
    sent = NOW + 301
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(WHSEC, MSG_ID, str(sent), v1(KEY, timestamp=sent), BODY, NOW)
    assert code_of(excinfo) == (401, "signature_expired")


def test_a_timestamp_five_minutes_off_still_passes() -> None:
    sent = NOW - 300
    verify_standard_webhooks(WHSEC, MSG_ID, str(sent), v1(KEY, timestamp=sent), BODY, NOW)


def test_a_timestamp_that_is_not_a_number_is_invalid() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(WHSEC, MSG_ID, "yesterday", v1(KEY), BODY, NOW)
    assert code_of(excinfo) == (401, "signature_invalid")


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_each_missing_header_is_signature_missing(missing: str) -> None:
    values = {"webhook-id": MSG_ID, "webhook-timestamp": str(NOW), "webhook-signature": v1(KEY)}
    values[missing] = ""
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(
            WHSEC, values["webhook-id"], values["webhook-timestamp"], values["webhook-signature"], BODY, NOW
        )
    assert code_of(excinfo) == (401, "signature_missing")
    assert missing in excinfo.value.message


def test_entries_of_other_versions_are_ignored() -> None:
    header = f"v1a,{v1(KEY)[3:]} v2,bm90LWEtc2lnbmF0dXJl {v1(KEY)}"
    verify_standard_webhooks(WHSEC, MSG_ID, str(NOW), header, BODY, NOW)


def test_only_entries_of_other_versions_is_signature_missing() -> None:
    header = f"v1a,{v1(KEY)[3:]} v2,bm90LWEtc2lnbmF0dXJl"
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(WHSEC, MSG_ID, str(NOW), header, BODY, NOW)
    assert code_of(excinfo) == (401, "signature_missing")


def test_a_v1_entry_that_is_not_base64_matches_nothing() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(WHSEC, MSG_ID, str(NOW), "v1,not*base64!", BODY, NOW)
    assert code_of(excinfo) == (401, "signature_invalid")


def test_a_whsec_secret_signs_with_its_decoded_key() -> None:
    with pytest.raises(SignatureError):
        verify_standard_webhooks(WHSEC, MSG_ID, str(NOW), v1(WHSEC), BODY, NOW)


def test_a_secret_without_the_whsec_prefix_is_used_as_is() -> None:
    raw = b"a-raw-shared-secret"
    verify_standard_webhooks(raw, MSG_ID, str(NOW), v1(raw), BODY, NOW)


def test_a_whsec_secret_that_is_not_base64_is_the_services_fault() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_standard_webhooks(b"whsec_***", MSG_ID, str(NOW), v1(KEY), BODY, NOW)
    assert code_of(excinfo) == (503, "signature_secret_unavailable")


# -- GitHub


def test_a_valid_github_signature_passes() -> None:
    verify_github(b"gh-secret", github(b"gh-secret"), BODY)


def test_a_github_signature_with_another_secret_is_invalid() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_github(b"gh-secret", github(b"other"), BODY)
    assert code_of(excinfo) == (401, "signature_invalid")


def test_a_github_signature_of_another_body_is_invalid() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_github(b"gh-secret", github(b"gh-secret", b"{}"), BODY)
    assert code_of(excinfo) == (401, "signature_invalid")


def test_a_missing_github_signature_is_signature_missing() -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_github(b"gh-secret", None, BODY)
    assert code_of(excinfo) == (401, "signature_missing")


@pytest.mark.parametrize(
    "header",
    [
        "sha1=" + hmac.new(b"gh-secret", BODY, hashlib.sha1).hexdigest(),
        hmac.new(b"gh-secret", BODY, hashlib.sha256).hexdigest(),
        "sha256=not-hex",
        "sha256=",
    ],
)
def test_a_malformed_github_signature_is_invalid(header: str) -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_github(b"gh-secret", header, BODY)
    assert code_of(excinfo) == (401, "signature_invalid")


# -- SignatureSecrets: files


def receiver_with(signature: SignatureSpec) -> Receiver:
    spec = receiver_spec(
        "scaleService",
        {
            "projectId": "1a5",
            "serviceId": "1s7",
            "action": "up",
            "amount": 1,
            "min": 1,
            "max": 10,
        },
        signature=signature,
    )
    driver = load_drivers()["scaleService"]
    return Receiver(
        namespace="default",
        name="signed",
        driver="scaleService",
        spec=spec,
        target=driver.target(spec, "default"),
        signature=signature,
    )


async def test_a_secret_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(WHSEC + b"\n")
    receiver = receiver_with({"scheme": "standard-webhooks", "secretFile": str(path)})
    assert await SignatureSecrets().secret(receiver) == WHSEC


async def test_a_rewritten_secret_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"first")
    secrets = SignatureSecrets()
    receiver = receiver_with({"scheme": "github", "secretFile": str(path)})
    assert await secrets.secret(receiver) == b"first"
    path.write_bytes(b"second")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert await secrets.secret(receiver) == b"second"


async def test_a_missing_secret_file_is_503_secret_unavailable(tmp_path: Path) -> None:
    receiver = receiver_with({"scheme": "github", "secretFile": str(tmp_path / "gone")})
    with pytest.raises(SignatureError) as excinfo:
        await SignatureSecrets().secret(receiver)
    assert code_of(excinfo) == (503, "signature_secret_unavailable")


async def test_an_empty_secret_file_is_503_secret_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"\n")
    receiver = receiver_with({"scheme": "github", "secretFile": str(path)})
    with pytest.raises(SignatureError) as excinfo:
        await SignatureSecrets().secret(receiver)
    assert code_of(excinfo) == (503, "signature_secret_unavailable")


async def test_a_secret_ref_without_kubernetes_is_401_with_the_reason() -> None:
    receiver = receiver_with({"scheme": "github", "secretRef": {"name": "gh"}})
    with pytest.raises(SignatureError) as excinfo:
        await SignatureSecrets(kube=None).secret(receiver)
    assert code_of(excinfo) == (401, "signature_invalid")
    assert "operator mode" in excinfo.value.message
