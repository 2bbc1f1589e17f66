"""Signature checks of the local CLOB: L1 ClobAuth (EIP-712), L2 HMAC, and V2 order EIP-712 digests.

Digests are computed by hand (eth_abi + keccak) rather than through `encode_typed_data`, because the
server recovers one signature per posted order and the generic encoder is ~10x slower; the tests
check both paths give the same digest. Public keys are recovered with coincurve directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import coincurve
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

CLOB_AUTH_MESSAGE = "This message attests that I control the given wallet"

# Exchange V2 addresses are the same on Polygon (137) and Amoy (80002) in the client's config.
EXCHANGE_V2 = "0xE111180000d2663C0091e4f400237545B87B996B"
NEG_RISK_EXCHANGE_V2 = "0xe2222d279d744050d28e00520010520000310F59"

_DOMAIN_TYPE_HASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_AUTH_DOMAIN_TYPE_HASH = keccak(text="EIP712Domain(string name,string version,uint256 chainId)")
_CLOB_AUTH_TYPE_HASH = keccak(text="ClobAuth(address address,string timestamp,uint256 nonce,string message)")
ORDER_TYPE_STRING = (
    "Order(uint256 salt,address maker,address signer,uint256 tokenId,"
    "uint256 makerAmount,uint256 takerAmount,uint8 side,uint8 signatureType,"
    "uint256 timestamp,bytes32 metadata,bytes32 builder)"
)
_ORDER_TYPE_HASH = keccak(text=ORDER_TYPE_STRING)
# POLY_1271 (deposit wallet) orders wrap the order hash in Solady's TypedDataSign envelope.
_SOLADY_TYPE_HASH = keccak(
    text="TypedDataSign(Order contents,string name,string version,uint256 chainId,"
    "address verifyingContract,bytes32 salt)" + ORDER_TYPE_STRING
)
_DEPOSIT_WALLET_NAME_HASH = keccak(text="DepositWallet")
_DEPOSIT_WALLET_VERSION_HASH = keccak(text="1")

SIDES = {"BUY": 0, "SELL": 1}


class AuthError(Exception):
    """A request whose credentials or signature don't check out (-> 401 or 400)."""


def _domain_separator(chain_id: int, exchange: str, version: str = "2") -> bytes:
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                _DOMAIN_TYPE_HASH,
                keccak(text="Polymarket CTF Exchange"),
                keccak(text=version),
                chain_id,
                exchange,
            ],
        )
    )


_domain_cache: dict[tuple[int, str], bytes] = {}


def exchange_domain(chain_id: int, neg_risk: bool) -> bytes:
    """EIP-712 domain separator of the V2 exchange (or the neg-risk one) on `chain_id`."""
    exchange = NEG_RISK_EXCHANGE_V2 if neg_risk else EXCHANGE_V2
    key = (chain_id, exchange)
    if key not in _domain_cache:
        _domain_cache[key] = _domain_separator(chain_id, exchange)
    return _domain_cache[key]


def recover_address(digest: bytes, signature: bytes) -> str:
    """Checksummed address that produced the 65-byte (r, s, v) `signature` over `digest`."""
    if len(signature) != 65:
        raise AuthError("invalid signature length")
    v = signature[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise AuthError("invalid signature v")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes([v]), digest, hasher=None)
    except Exception as exc:
        raise AuthError("invalid signature") from exc
    return to_checksum_address(keccak(pub.format(compressed=False)[1:])[-20:])


def _hex_bytes(value: str) -> bytes:
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise AuthError("invalid hex") from exc


# --- L1: ClobAuth --------------------------------------------------------------------------------


def clob_auth_digest(chain_id: int, address: str, timestamp: str, nonce: int) -> bytes:
    domain = keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256"],
            [_AUTH_DOMAIN_TYPE_HASH, keccak(text="ClobAuthDomain"), keccak(text="1"), chain_id],
        )
    )
    struct = keccak(
        abi_encode(
            ["bytes32", "address", "bytes32", "uint256", "bytes32"],
            [_CLOB_AUTH_TYPE_HASH, address, keccak(text=timestamp), nonce, keccak(text=CLOB_AUTH_MESSAGE)],
        )
    )
    return keccak(b"\x19\x01" + domain + struct)


def verify_l1(chain_id: int, address: str, signature: str, timestamp: str, nonce: int) -> str:
    """Check the L1 headers; returns the checksummed address or raises AuthError."""
    try:
        claimed = to_checksum_address(address)
    except Exception as exc:
        raise AuthError("invalid POLY_ADDRESS") from exc
    recovered = recover_address(clob_auth_digest(chain_id, claimed, timestamp, nonce), _hex_bytes(signature))
    if recovered != claimed:
        raise AuthError("Invalid L1 Request headers")
    return claimed


# --- L2: HMAC ------------------------------------------------------------------------------------


def hmac_signature(secret: str, timestamp: str, method: str, path: str, body: str) -> str:
    # The client turns ' into " in the body before signing (a leftover of str(dict)); mirror that.
    message = f"{timestamp}{method}{path}{body.replace(chr(39), chr(34)) if body else ''}"
    digest = hmac.new(base64.urlsafe_b64decode(secret), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()


def verify_hmac(secret: str, signature: str, timestamp: str, method: str, path: str, body: str) -> bool:
    return hmac.compare_digest(hmac_signature(secret, timestamp, method, path, body), signature)


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    secret: str
    passphrase: str
    address: str
    nonce: int


def derive_api_key(server_secret: bytes, address: str, nonce: int) -> ApiKey:
    """Deterministic credentials per (address, nonce), like the real derive endpoint."""
    seed = hmac.new(server_secret, f"{address.lower()}:{nonce}".encode(), hashlib.sha256).digest()
    more = hashlib.sha256(seed + b"secret").digest()
    h = seed.hex()
    key = f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
    return ApiKey(
        key=key,
        secret=base64.urlsafe_b64encode(more).decode(),
        passphrase=hashlib.sha256(seed + b"passphrase").hexdigest(),
        address=to_checksum_address(address),
        nonce=nonce,
    )


# --- Orders --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedOrder:
    """A V2 order as posted, with integers parsed; `order_hash` is the EIP-712 digest (the order ID)."""

    salt: int
    maker: str
    signer: str
    token_id: str
    maker_amount: int
    taker_amount: int
    side: str
    expiration: int
    signature_type: int
    timestamp_ms: int
    metadata: str
    builder: str
    signature: str
    order_hash: str
    recovered: str


V1_ONLY_FIELDS = ("taker", "nonce", "feeRateBps")


def parse_v2_order(raw: dict[str, Any], chain_id: int, neg_risk: bool) -> SignedOrder:
    """Parse and verify a posted V2 order; raises AuthError (bad signature) or ValueError (bad shape)."""
    try:
        salt = int(raw["salt"])
        maker = to_checksum_address(raw["maker"])
        signer = to_checksum_address(raw["signer"])
        token_id = str(raw["tokenId"])
        maker_amount = int(raw["makerAmount"])
        taker_amount = int(raw["takerAmount"])
        side = str(raw["side"]).upper()
        expiration = int(raw.get("expiration") or 0)
        sig_type = int(raw["signatureType"])
        ts = int(raw["timestamp"])
        metadata = str(raw.get("metadata") or "0x" + "00" * 32)
        builder = str(raw.get("builder") or "0x" + "00" * 32)
        signature = str(raw["signature"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid order payload: {exc}") from exc
    if side not in SIDES:
        raise ValueError("invalid order side")
    if sig_type not in (0, 1, 2, 3):
        raise ValueError("invalid signature type")
    meta_b, builder_b = _hex_bytes(metadata), _hex_bytes(builder)
    if len(meta_b) != 32 or len(builder_b) != 32:
        raise ValueError("metadata and builder must be bytes32")
    domain = exchange_domain(chain_id, neg_risk)
    struct = keccak(
        abi_encode(
            [
                "bytes32",
                "uint256",
                "address",
                "address",
                "uint256",
                "uint256",
                "uint256",
                "uint8",
                "uint8",
                "uint256",
                "bytes32",
                "bytes32",
            ],
            [
                _ORDER_TYPE_HASH,
                salt,
                maker,
                signer,
                int(token_id),
                maker_amount,
                taker_amount,
                SIDES[side],
                sig_type,
                ts,
                meta_b,
                builder_b,
            ],
        )
    )
    digest = keccak(b"\x19\x01" + domain + struct)
    sig = _hex_bytes(signature)
    if sig_type == 3:
        # ERC-7739 nested signature: 65-byte ECDSA over the TypedDataSign envelope, then the app
        # domain separator, the contents hash, the type string and its 2-byte length.
        if len(sig) < 65 + 64 + 2 or sig[65:97] != domain or sig[97:129] != struct:
            raise AuthError("invalid POLY_1271 signature envelope")
        envelope = keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "bytes32", "uint256", "address", "bytes32"],
                [
                    _SOLADY_TYPE_HASH,
                    struct,
                    _DEPOSIT_WALLET_NAME_HASH,
                    _DEPOSIT_WALLET_VERSION_HASH,
                    chain_id,
                    signer,
                    b"\x00" * 32,
                ],
            )
        )
        recovered = recover_address(keccak(b"\x19\x01" + domain + envelope), sig[:65])
    else:
        recovered = recover_address(digest, sig)
        if recovered != signer:
            raise AuthError("invalid order signature")
    return SignedOrder(
        salt=salt,
        maker=maker,
        signer=signer,
        token_id=token_id,
        maker_amount=maker_amount,
        taker_amount=taker_amount,
        side=side,
        expiration=expiration,
        signature_type=sig_type,
        timestamp_ms=ts,
        metadata=metadata,
        builder=builder,
        signature=signature,
        order_hash="0x" + digest.hex(),
        recovered=recovered,
    )
