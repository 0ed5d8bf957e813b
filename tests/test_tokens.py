"""Trigger tokens: signing keys on disk, minting, verifying, and revocation checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from controller.drivers import load_drivers
from controller.model import ActiveReceiver, Receiver
from controller.receiver_set import ReceiverSet
from controller.receivers.loader import load_documents
from controller.store.base import StoredToken
from controller.tokens import (
    KeyRing,
    ProjectMismatch,
    RancherCredential,
    TokenInvalid,
    TokenRevoked,
    TokenSuperseded,
    TokenVerifier,
    check_current,
    check_rancher,
    matches_stored,
    mint_token,
    restore_token,
    token_digest,
)
from tests import rancher_objects
from tests.specs import receiver_spec
from tests.test_driver_manifests import VALID, write

NOW = 1_800_000_000.0
# A fixed key for property tests: hypothesis runs many examples, and key generation is not what they test.
FIXED_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def make_receiver(service_id: str = "1s7") -> Receiver:
    spec = receiver_spec(
        "scaleService",
        {
            "projectId": "1a5",
            "serviceId": service_id,
            "action": "up",
            "amount": 1,
            "min": 1,
            "max": 10,
        },
    )
    driver = load_drivers()["scaleService"]
    return Receiver(
        namespace="default",
        name="web-up",
        driver="scaleService",
        spec=spec,
        target=driver.target(spec, "default"),
    )


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def keyring(keys_dir: Path) -> KeyRing:
    return KeyRing.load_or_create(keys_dir, clock=lambda: NOW)


def active_for(keyring: KeyRing, receiver: Receiver, jti: str = "j1") -> ActiveReceiver:
    token, kid = mint_token(keyring, receiver=receiver, uid="u1", jti=jti, now=NOW)
    return ActiveReceiver(receiver=receiver, uid="u1", jti=jti, token=token, kid=kid)


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_minted_token_verifies_and_carries_receiver_and_target(keyring: KeyRing) -> None:
    active = active_for(keyring, make_receiver())
    claims = TokenVerifier(keyring).verify(active.token)
    assert (claims.namespace, claims.name, claims.uid, claims.jti) == ("default", "web-up", "u1", "j1")
    assert claims.target == {"projectId": "1a5", "serviceId": "1s7"}
    assert claims.driver == "scaleService" and claims.iat == int(NOW) and claims.kid == keyring.newest_kid


def test_key_files_are_private(keys_dir: Path, keyring: KeyRing) -> None:
    files = list(keys_dir.glob("*.pem"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_reloaded_key_ring_verifies_earlier_tokens(keys_dir: Path, keyring: KeyRing) -> None:
    active = active_for(keyring, make_receiver())
    reloaded = KeyRing.load_or_create(keys_dir)
    assert reloaded.kids == keyring.kids
    assert TokenVerifier(reloaded).verify(active.token).jti == "j1"


def test_newest_key_signs_and_older_keys_still_verify(keys_dir: Path, keyring: KeyRing) -> None:
    old = active_for(keyring, make_receiver())
    new_kid = KeyRing.create_key(keys_dir, clock=lambda: NOW + 60)
    rotated = KeyRing.load(keys_dir)
    new = active_for(rotated, make_receiver(), jti="j2")
    assert new.kid == new_kid != old.kid
    verifier = TokenVerifier(rotated)
    assert verifier.verify(old.token).kid == old.kid
    assert verifier.verify(new.token).kid == new_kid


def test_removed_key_makes_its_tokens_unknown(keys_dir: Path, keyring: KeyRing) -> None:
    old = active_for(keyring, make_receiver())
    KeyRing.create_key(keys_dir, clock=lambda: NOW + 60)
    (keys_dir / f"{old.kid}.pem").unlink()
    with pytest.raises(TokenInvalid) as e:
        TokenVerifier(KeyRing.load(keys_dir)).verify(old.token)
    assert e.value.code == "unknown_key"


def test_alg_none_is_refused(keyring: KeyRing) -> None:
    active = active_for(keyring, make_receiver())
    _, payload, _ = active.token.split(".")
    forged = f"{b64({'alg': 'none', 'kid': keyring.newest_kid})}.{payload}."
    with pytest.raises(TokenInvalid) as e:
        TokenVerifier(keyring).verify(forged)
    assert e.value.code == "bad_algorithm"


def test_hs256_forged_with_a_known_secret_is_refused(keyring: KeyRing) -> None:
    forged = jwt.encode(
        {"ns": "default"},
        "a-shared-secret-long-enough-for-hs256!",
        algorithm="HS256",
        headers={"kid": keyring.newest_kid},
    )
    with pytest.raises(TokenInvalid) as e:
        TokenVerifier(keyring).verify(forged)
    assert e.value.code == "bad_algorithm"


def test_tampered_payload_fails_the_signature(keyring: KeyRing) -> None:
    active = active_for(keyring, make_receiver())
    header, payload, signature = active.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["target"]["serviceId"] = "1s99"
    with pytest.raises(TokenInvalid) as e:
        TokenVerifier(keyring).verify(f"{header}.{b64(claims)}.{signature}")
    assert e.value.code == "bad_signature"


def test_token_without_kid_is_malformed(keyring: KeyRing) -> None:
    active = active_for(keyring, make_receiver())
    _, payload, signature = active.token.split(".")
    with pytest.raises(TokenInvalid) as e:
        TokenVerifier(keyring).verify(f"{b64({'alg': 'EdDSA'})}.{payload}.{signature}")
    assert e.value.code == "token_malformed"


def test_garbage_is_malformed_and_empty_is_missing(keyring: KeyRing) -> None:
    verifier = TokenVerifier(keyring)
    with pytest.raises(TokenInvalid) as e:
        verifier.verify("not-a-jwt")
    assert e.value.code == "token_malformed"
    with pytest.raises(TokenInvalid) as e:
        verifier.verify("")
    assert e.value.code == "token_missing"


def test_verified_cache_is_bounded(keyring: KeyRing) -> None:
    verifier = TokenVerifier(keyring, cache_size=3)
    for i in range(10):
        verifier.verify(active_for(keyring, make_receiver(), jti=f"j{i}").token)
    assert verifier.cache_len() == 3


def test_current_token_passes(keyring: KeyRing) -> None:
    active = active_for(keyring, make_receiver())
    check_current(TokenVerifier(keyring).verify(active.token), active, "1a5")


def test_token_of_a_removed_receiver_is_revoked(keyring: KeyRing) -> None:
    active = active_for(keyring, make_receiver())
    with pytest.raises(TokenRevoked):
        check_current(TokenVerifier(keyring).verify(active.token), None, None)


def test_token_of_a_recreated_receiver_is_revoked(keyring: KeyRing) -> None:
    active = active_for(keyring, make_receiver())
    with pytest.raises(TokenRevoked):
        check_current(TokenVerifier(keyring).verify(active.token), replace(active, uid="u2"), None)


def test_token_with_an_old_jti_is_superseded(keyring: KeyRing) -> None:
    old = active_for(keyring, make_receiver())
    new = active_for(keyring, make_receiver(), jti="j2")
    with pytest.raises(TokenSuperseded):
        check_current(TokenVerifier(keyring).verify(old.token), new, None)


def test_token_for_another_target_is_superseded(keyring: KeyRing) -> None:
    old = active_for(keyring, make_receiver())
    moved = replace(old, receiver=make_receiver(service_id="1s8"))
    with pytest.raises(TokenSuperseded):
        check_current(TokenVerifier(keyring).verify(old.token), moved, None)


def test_project_id_must_match_the_token(keyring: KeyRing) -> None:
    active = active_for(keyring, make_receiver())
    with pytest.raises(ProjectMismatch):
        check_current(TokenVerifier(keyring).verify(active.token), active, "1a6")


@given(st.text(max_size=300))
def test_random_strings_only_raise_token_invalid(text: str) -> None:
    keyring = KeyRing({"k1": FIXED_KEY})
    with pytest.raises(TokenInvalid):
        TokenVerifier(keyring).verify(text)


@given(st.integers(min_value=0), st.characters(codec="ascii"))
def test_mutated_tokens_only_raise_token_invalid(position: int, char: str) -> None:
    keyring = KeyRing({"k1": FIXED_KEY})
    token, _ = mint_token(keyring, receiver=make_receiver(), uid="u1", jti="j1", now=NOW)
    i = position % len(token)
    mutated = token[:i] + char + token[i + 1 :]
    verifier = TokenVerifier(keyring)
    try:
        claims = verifier.verify(mutated)
    except TokenInvalid:
        return
    # A mutation that still verifies can only be one that decodes to the same bytes (base64 slack).
    assert claims == verifier.verify(token)


# -- restoring a token from its claims (the store keeps only a digest)


def record(receiver: Receiver, token: str, kid: str, *, issued_at: float) -> StoredToken:
    """What the store keeps of a token minted for ``receiver`` with uid "u1" and jti "j1"."""
    return StoredToken(
        namespace=receiver.namespace, name=receiver.name, uid="u1", jti="j1", kid=kid,
        token=token_digest(token), driver=receiver.driver, target_id=receiver.target.id,
        token_generation="", issued_at=issued_at,
    )  # fmt: skip


@pytest.mark.parametrize("driver", ["scaleService", *sorted(VALID)])
def test_a_token_signs_again_to_the_same_bytes_for_every_driver(tmp_path: Path, driver: str) -> None:
    config = VALID.get(driver) or {
        "scaleServiceConfig": {
            "projectId": "1a5", "serviceId": "1s7", "action": "up", "amount": 1, "min": 0, "max": 9,
        }
    }  # fmt: skip
    [receiver] = load_documents(write(tmp_path, driver, config), load_drivers()).receivers
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    token, kid = mint_token(keyring, receiver=receiver, uid="u1", jti="j1", now=NOW + 0.75)
    target = load_drivers()[driver].target_from_key(receiver.target.id.partition(":")[2])
    assert restore_token(keyring, record(receiver, token, kid, issued_at=NOW + 0.75), target) == token


def test_a_token_whose_key_is_gone_cannot_be_restored(tmp_path: Path) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    receiver = make_receiver()
    token, _ = mint_token(keyring, receiver=receiver, uid="u1", jti="j1", now=NOW)
    gone = record(receiver, token, "20200101T000000000000Z-gone", issued_at=NOW)
    assert restore_token(keyring, gone, receiver.target) is None


def test_claims_that_sign_to_another_token_than_the_digest_are_not_restored(tmp_path: Path) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    receiver = make_receiver()
    token, kid = mint_token(keyring, receiver=receiver, uid="u1", jti="j1", now=NOW)
    assert restore_token(keyring, record(receiver, token, kid, issued_at=NOW + 1), receiver.target) is None


def test_a_digest_matches_only_its_own_token() -> None:
    assert not matches_stored("a.b.c", token_digest("a.b.d"))
    assert matches_stored("a.b.c", "a.b.c")  # what an older version stored


# -- Rancher's credentials (imported receivers)

RANCHER_KEY = rancher_objects.SCALE_SERVICE_KEY


@pytest.fixture(scope="module")
def cattle_key() -> rsa.RSAPrivateKey:
    return rancher_objects.cattle_key()


def imported(keyring: KeyRing, key: str = RANCHER_KEY) -> ActiveReceiver:
    receiver = replace(make_receiver(), rancher_key_sha256=hashlib.sha256(key.encode()).hexdigest())
    return active_for(keyring, receiver)


def test_a_string_that_is_no_jwt_is_taken_for_a_rancher_key_with_the_urls_project(keyring: KeyRing) -> None:
    credential = TokenVerifier(keyring).rancher_credential(RANCHER_KEY, "1a5")
    assert credential == RancherCredential(hashlib.sha256(RANCHER_KEY.encode()).hexdigest(), "1a5")


def test_a_token_of_ours_is_no_rancher_credential(keyring: KeyRing, cattle_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(keyring, rancher_public_key=cattle_key.public_key())
    assert verifier.rancher_credential(active_for(keyring, make_receiver()).token, "1a5") is None


def test_a_rancher_key_opens_its_receiver_as_its_current_token(keyring: KeyRing) -> None:
    active = imported(keyring)
    credential = TokenVerifier(keyring).rancher_credential(RANCHER_KEY, "1a5")
    assert credential is not None
    current = TokenVerifier(keyring).verify(active.token)
    assert replace(check_rancher(credential, active), iat=current.iat) == current  # no issue time of its own


def test_a_rancher_key_of_no_receiver_is_refused_like_any_stranger(keyring: KeyRing) -> None:
    credential = TokenVerifier(keyring).rancher_credential("x" * 40, "1a5")
    assert credential is not None
    for active in (None, imported(keyring), active_for(keyring, make_receiver())):
        with pytest.raises(TokenInvalid) as e:
            check_rancher(credential, active)
        assert e.value.code == "token_malformed"


def test_a_rancher_key_stops_at_a_new_token_generation(keyring: KeyRing) -> None:
    active = imported(keyring)
    bumped = replace(active, receiver=replace(active.receiver, token_generation="2"))
    with pytest.raises(TokenSuperseded):
        check_rancher(RancherCredential(active.receiver.rancher_key_sha256 or "", "1a5"), bumped)


@pytest.mark.parametrize("project", ["1a6", None])
def test_a_rancher_key_needs_its_receivers_project(keyring: KeyRing, project: str | None) -> None:
    active = imported(keyring)
    with pytest.raises(ProjectMismatch):
        check_rancher(RancherCredential(active.receiver.rancher_key_sha256 or "", project), active)


def test_an_rs256_token_is_no_rancher_credential_without_cattles_key(
    keyring: KeyRing, cattle_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(keyring)
    token = rancher_objects.legacy_token(cattle_key)
    assert verifier.rancher_credential(token, None) is None
    with pytest.raises(TokenInvalid) as e:
        verifier.verify(token)
    assert e.value.code == "bad_algorithm"


def test_an_rs256_token_signed_by_cattle_names_its_receivers_key_and_project(
    keyring: KeyRing, cattle_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(keyring, rancher_public_key=cattle_key.public_key())
    credential = verifier.rancher_credential(rancher_objects.legacy_token(cattle_key), None)
    digest = hashlib.sha256(rancher_objects.LEGACY_UUID.encode()).hexdigest()
    assert credential == RancherCredential(digest, "1a5")


def test_an_rs256_token_signed_by_another_key_is_a_bad_signature(
    keyring: KeyRing, cattle_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(keyring, rancher_public_key=cattle_key.public_key())
    with pytest.raises(TokenInvalid) as e:
        verifier.rancher_credential(rancher_objects.legacy_token(rancher_objects.cattle_key()), None)
    assert e.value.code == "bad_signature"


def test_an_rs256_token_for_another_project_than_the_urls_is_a_mismatch(
    keyring: KeyRing, cattle_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(keyring, rancher_public_key=cattle_key.public_key())
    with pytest.raises(ProjectMismatch):
        verifier.rancher_credential(rancher_objects.legacy_token(cattle_key), "1a6")


def test_an_hs256_token_keyed_with_cattles_public_key_is_refused(
    keyring: KeyRing, cattle_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    # The classic confusion: the public key used as an HMAC secret. Only RS256 is Rancher's.
    public_pem = rancher_objects.write_public_key(cattle_key, tmp_path / "cattle.pem").read_bytes()
    header = b64({"alg": "HS256", "typ": "JWT"})
    payload = b64({"projectId": "1a5", "uuid": rancher_objects.LEGACY_UUID})
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    verifier = TokenVerifier(keyring, rancher_public_key=cattle_key.public_key())
    assert verifier.rancher_credential(forged, None) is None
    with pytest.raises(TokenInvalid) as e:
        verifier.verify(forged)
    assert e.value.code == "bad_algorithm"


def test_an_unsigned_rs256_token_is_refused(keyring: KeyRing, cattle_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(keyring, rancher_public_key=cattle_key.public_key())
    header, payload, _ = rancher_objects.legacy_token(cattle_key).split(".")
    with pytest.raises(TokenInvalid) as e:
        verifier.rancher_credential(f"{header}.{payload}.", None)
    assert e.value.code == "bad_signature"


def test_the_receiver_set_finds_an_imported_receiver_by_its_key_digest_until_it_goes(
    keyring: KeyRing,
) -> None:
    receiver_set = ReceiverSet()
    active = imported(keyring)
    digest = active.receiver.rancher_key_sha256 or ""
    receiver_set.put(active)
    assert receiver_set.by_rancher_digest(digest) == active
    receiver_set.remove(active.key)
    assert receiver_set.by_rancher_digest(digest) is None


def test_a_receiver_put_again_without_its_digest_is_no_longer_found_by_it(keyring: KeyRing) -> None:
    receiver_set = ReceiverSet()
    active = imported(keyring)
    receiver_set.put(active)
    receiver_set.put(active_for(keyring, make_receiver()))  # the same receiver, its digest edited away
    assert receiver_set.by_rancher_digest(active.receiver.rancher_key_sha256 or "") is None
