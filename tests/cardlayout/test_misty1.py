"""Known-answer and property tests for MISTY1 (RFC 2994), the cipher of STS EA11.

The known answers are RFC 2994's example data. Beyond them, the optimised
cipher (FI folded into two tables, four 16-bit words, subkeys laid out per
round) is held to a literal transcription of the RFC's pseudocode written here
(32-bit D0/D1, FL/FLINV/FO/FI as functions of the round number), and the S-boxes
to the properties their design gives them, so a mistyped table entry or a
misplaced subkey fails a test even where the two example blocks do not reach it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardlayout.errors import FormatError
from cardlayout.sts.misty1 import S7, S9, Misty1, _fi_tables, fi

# -- RFC 2994 example data -----------------------------------------------------

RFC_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
RFC_BLOCKS = [
    ("0123456789abcdef", "8b1da5f56ab3d07c"),
    ("fedcba9876543210", "04b68240b13be95d"),
]


@pytest.mark.parametrize(("plain", "cipher"), RFC_BLOCKS)
def test_rfc2994_example_encrypts(plain: str, cipher: str) -> None:
    assert Misty1(RFC_KEY).encrypt_block(bytes.fromhex(plain)).hex() == cipher


@pytest.mark.parametrize(("plain", "cipher"), RFC_BLOCKS)
def test_rfc2994_example_decrypts(plain: str, cipher: str) -> None:
    assert Misty1(RFC_KEY).decrypt_block(bytes.fromhex(cipher)).hex() == plain


def test_one_key_bit_changes_the_ciphertext() -> None:
    other = bytes([RFC_KEY[0] ^ 0x01]) + RFC_KEY[1:]
    plain, cipher = RFC_BLOCKS[0]
    assert Misty1(other).encrypt_block(bytes.fromhex(plain)).hex() != cipher


# -- The S-boxes -----------------------------------------------------------------


def _max_differential(sbox: tuple[int, ...]) -> int:
    """Largest count of x with S(x) ^ S(x ^ a) == b over all a != 0 and b."""
    size = len(sbox)
    worst = 0
    for a in range(1, size):
        counts = [0] * size
        for x in range(size):
            counts[sbox[x] ^ sbox[x ^ a]] += 1
        worst = max(worst, *counts)
    return worst


def _algebraic_degree(sbox: tuple[int, ...], bits: int) -> int:
    """Highest degree of the output bits' algebraic normal forms (Moebius transform)."""
    degree = 0
    for bit in range(bits):
        anf = [(y >> bit) & 1 for y in sbox]
        for i in range(bits):
            step = 1 << i
            for x in range(len(anf)):
                if x & step:
                    anf[x] ^= anf[x ^ step]
        degree = max(degree, *(x.bit_count() for x in range(len(anf)) if anf[x]))
    return degree


@pytest.mark.parametrize(("sbox", "bits", "degree"), [(S7, 7, 3), (S9, 9, 2)], ids=["S7", "S9"])
def test_sbox_has_its_design_properties(sbox: tuple[int, ...], bits: int, degree: int) -> None:
    # A permutation, almost perfect nonlinear (every nonzero input difference
    # gives each output difference at most twice), and of the algebraic degree of
    # MISTY1's design (S7 cubic, S9 quadratic): one wrong entry breaks at least one.
    assert len(sbox) == 1 << bits
    assert sorted(sbox) == list(range(1 << bits))
    assert _max_differential(sbox) == 2
    assert _algebraic_degree(sbox, bits) == degree


def test_sbox_first_and_last_entries() -> None:
    assert (S7[0], S7[1], S7[126], S7[127]) == (0x1B, 0x32, 0x58, 0x7D)
    assert (S9[0], S9[1], S9[510], S9[511]) == (0x1C3, 0x0CB, 0x04C, 0x1C2)


# -- FI and its two tables ---------------------------------------------------------


@pytest.mark.parametrize("key", [0x0000, 0xFFFF, 0x1234, 0xFE00, 0x01FF])
def test_fi_tables_agree_with_fi_for_every_input(key: int) -> None:
    before, after = _fi_tables()
    assert all(after[before[x] ^ key] == fi(x, key) for x in range(0x10000))


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_fi_tables_agree_with_fi(x: int, key: int) -> None:
    before, after = _fi_tables()
    assert after[before[x] ^ key] == fi(x, key)


@given(st.integers(0, 0xFFFF))
def test_fi_is_a_permutation_under_each_key_sample(key: int) -> None:
    # FI is invertible for every key; check injectivity on a stride of inputs.
    outputs = {fi(x, key) for x in range(0, 0x10000, 7)}
    assert len(outputs) == len(range(0, 0x10000, 7))


# -- A literal transcription of RFC 2994 section 2, to compare with -----------------


def _rfc_ek(key: bytes) -> list[int]:
    ek = [key[i * 2] * 256 + key[i * 2 + 1] for i in range(8)]
    ek += [0] * 24
    for i in range(8):
        ek[i + 8] = fi(ek[i], ek[(i + 1) % 8])
        ek[i + 16] = ek[i + 8] & 0x1FF
        ek[i + 24] = ek[i + 8] >> 9
    return ek


def _rfc_fo(ek: list[int], fo_in: int, k: int) -> int:
    t0 = fo_in >> 16
    t1 = fo_in & 0xFFFF
    t0 = t0 ^ ek[k]
    t0 = fi(t0, ek[(k + 5) % 8 + 8])
    t0 = t0 ^ t1
    t1 = t1 ^ ek[(k + 2) % 8]
    t1 = fi(t1, ek[(k + 1) % 8 + 8])
    t1 = t1 ^ t0
    t0 = t0 ^ ek[(k + 7) % 8]
    t0 = fi(t0, ek[(k + 3) % 8 + 8])
    t0 = t0 ^ t1
    t1 = t1 ^ ek[(k + 4) % 8]
    return (t1 << 16) | t0


def _rfc_fl(ek: list[int], fl_in: int, k: int) -> int:
    d0 = fl_in >> 16
    d1 = fl_in & 0xFFFF
    if k % 2 == 0:
        d1 = d1 ^ (d0 & ek[k // 2])
        d0 = d0 ^ (d1 | ek[(k // 2 + 6) % 8 + 8])
    else:
        d1 = d1 ^ (d0 & ek[((k - 1) // 2 + 2) % 8 + 8])
        d0 = d0 ^ (d1 | ek[((k - 1) // 2 + 4) % 8])
    return (d0 << 16) | d1


def _rfc_flinv(ek: list[int], fl_in: int, k: int) -> int:
    d0 = fl_in >> 16
    d1 = fl_in & 0xFFFF
    if k % 2 == 0:
        d0 = d0 ^ (d1 | ek[(k // 2 + 6) % 8 + 8])
        d1 = d1 ^ (d0 & ek[k // 2])
    else:
        d0 = d0 ^ (d1 | ek[((k - 1) // 2 + 4) % 8])
        d1 = d1 ^ (d0 & ek[((k - 1) // 2 + 2) % 8 + 8])
    return (d0 << 16) | d1


def _rfc_encrypt(key: bytes, block: bytes) -> bytes:
    ek = _rfc_ek(key)
    p = int.from_bytes(block, "big")
    d0 = p >> 32
    d1 = p & 0xFFFFFFFF
    for r in (0, 2, 4, 6):
        d0 = _rfc_fl(ek, d0, r)
        d1 = _rfc_fl(ek, d1, r + 1)
        d1 = d1 ^ _rfc_fo(ek, d0, r)
        d0 = d0 ^ _rfc_fo(ek, d1, r + 1)
    d0 = _rfc_fl(ek, d0, 8)
    d1 = _rfc_fl(ek, d1, 9)
    return ((d1 << 32) | d0).to_bytes(8, "big")


def _rfc_decrypt(key: bytes, block: bytes) -> bytes:
    ek = _rfc_ek(key)
    c = int.from_bytes(block, "big")
    d0 = c & 0xFFFFFFFF
    d1 = c >> 32
    d0 = _rfc_flinv(ek, d0, 8)
    d1 = _rfc_flinv(ek, d1, 9)
    for r in (6, 4, 2, 0):
        d0 = d0 ^ _rfc_fo(ek, d1, r + 1)
        d1 = d1 ^ _rfc_fo(ek, d0, r)
        d0 = _rfc_flinv(ek, d0, r)
        d1 = _rfc_flinv(ek, d1, r + 1)
    return ((d0 << 32) | d1).to_bytes(8, "big")


@pytest.mark.parametrize(("plain", "cipher"), RFC_BLOCKS)
def test_rfc_transcription_gives_the_example_data(plain: str, cipher: str) -> None:
    assert _rfc_encrypt(RFC_KEY, bytes.fromhex(plain)).hex() == cipher
    assert _rfc_decrypt(RFC_KEY, bytes.fromhex(cipher)).hex() == plain


keys = st.binary(min_size=16, max_size=16)
blocks = st.binary(min_size=8, max_size=8)


@settings(max_examples=300)
@given(keys, blocks)
def test_cipher_matches_the_rfc_transcription(key: bytes, block: bytes) -> None:
    cipher = Misty1(key)
    assert cipher.encrypt_block(block) == _rfc_encrypt(key, block)
    assert cipher.decrypt_block(block) == _rfc_decrypt(key, block)


@settings(max_examples=300)
@given(keys, blocks)
def test_decrypt_inverts_encrypt(key: bytes, block: bytes) -> None:
    cipher = Misty1(key)
    encrypted = cipher.encrypt_block(block)
    assert len(encrypted) == 8
    assert cipher.decrypt_block(encrypted) == block
    assert cipher.encrypt_block(cipher.decrypt_block(block)) == block


# -- Refusals ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 8, 15, 17, 24, 32])
def test_wrong_key_size_is_refused(size: int) -> None:
    with pytest.raises(FormatError, match=rf"MISTY1 key must be 16 bytes .*got {size}$") as err:
        Misty1(bytes(size))
    assert err.value.field == "key"
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("size", [0, 7, 9, 16])
def test_wrong_block_size_is_refused(size: int) -> None:
    cipher = Misty1(RFC_KEY)
    for operation in (cipher.encrypt_block, cipher.decrypt_block):
        with pytest.raises(
            FormatError, match=rf"MISTY1 block must be 8 bytes .*got {size}$"
        ) as err:
            operation(bytes(size))
        assert err.value.field == "block"


def test_text_key_is_refused() -> None:
    with pytest.raises(FormatError, match="MISTY1 key must be bytes, not str"):
        Misty1("00112233445566778899aabbccddeeff"[:16])  # type: ignore[arg-type]


def test_bytearray_key_and_block_are_accepted() -> None:
    # Typed ``bytes``, but a caller's buffer works too rather than failing late.
    plain, cipher = RFC_BLOCKS[0]
    misty = Misty1(bytearray(RFC_KEY))  # type: ignore[arg-type]
    assert misty.encrypt_block(bytearray.fromhex(plain)).hex() == cipher  # type: ignore[arg-type]
