"""The virtual card operating system, command by command (docs/card.md 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from card_support import SERIAL

from cardlayout.apdu import commands
from cardlayout.apdu.apdu import CommandApdu, ResponseApdu
from cardlayout.errors import FormatError
from cardlayout.security import session as sm
from cardlayout.security.diversify import CardKeys, transport_key
from cardlayout.vcard.cos import (
    KEY_TRIES,
    VirtualCard,
    atr_for,
    new_image,
    serial_from_atr,
)
from cardlayout.vcard.image import LIFE_OPERATIONAL, CardImage


def raw(card: VirtualCard, apdu: CommandApdu) -> ResponseApdu:
    return ResponseApdu.from_bytes(card.process(apdu.to_bytes()))


def powered(image: CardImage) -> VirtualCard:
    """The card powered, with the electricity application selected."""
    card = VirtualCard(image)
    card.power_on()
    assert raw(card, commands.select(0xDF01)).ok
    return card


def authenticate(card: VirtualCard, kid: int, key: object) -> sm.SecureMessaging:
    rnd_icc = raw(card, commands.get_challenge()).data
    rnd_ifd = bytes(range(8))
    r = raw(
        card, commands.external_authenticate(kid, sm.external_cryptogram(key, rnd_icc, rnd_ifd))
    )  # type: ignore[arg-type]
    assert r.sw == 0x6110
    answer = raw(card, commands.get_response(16))
    assert answer.data == sm.card_cryptogram(key, rnd_ifd, rnd_icc)  # type: ignore[arg-type]
    return sm.SecureMessaging(sm.session_key(key, rnd_icc, rnd_ifd))  # type: ignore[arg-type]


def test_atr_carries_the_serial() -> None:
    card = VirtualCard(new_image(SERIAL))
    assert card.power_on() == bytes.fromhex("3B0A80685A00000000000001")
    assert serial_from_atr(atr_for(SERIAL)) == SERIAL
    with pytest.raises(FormatError):
        serial_from_atr(bytes.fromhex("3B00"))


def test_personalised_card_files_and_t0_behaviour(personalised_image: CardImage) -> None:
    card = VirtualCard(personalised_image)
    card.power_on()
    assert raw(card, commands.select(0xDF01)).sw == 0x9000
    assert raw(card, commands.select(0xDF02)).sw == 0x6A82
    # READ BINARY of EF02 (22 bytes) asking 64: 6Cxx gives the right length.
    assert raw(card, commands.read_binary(0, 64, sfi=2)).sw == 0x6C16
    assert len(raw(card, commands.read_binary(0, 22, sfi=2)).data) == 22
    # Le 00: whatever is there, up to 256.
    assert len(raw(card, commands.read_binary(0, 256, sfi=3)).data) == 256
    assert len(raw(card, commands.read_binary(256, 256)).data) == 2  # EF03 is current
    assert raw(card, commands.read_binary(300, 1)).sw == 0x6B00
    # SELECT with FCP is case 4: 61xx then GET RESPONSE.
    r = raw(card, commands.select(0x0005, with_fcp=True))
    assert r.sw1 == 0x61
    fcp = raw(card, commands.get_response(r.sw2)).data
    assert fcp[:2] == bytes((0x62, len(fcp) - 2)) and bytes.fromhex("80020040") in fcp
    assert raw(card, commands.get_response(4)).sw == 0x6985  # nothing pending
    assert raw(card, CommandApdu(0x00, 0x12, 0, 0)).sw == 0x6D00
    assert raw(card, CommandApdu(0xA0, 0xB0, 0, 0, le=1)).sw == 0x6E00


def test_update_needs_authentication_and_a_valid_mac(
    personalised_image: CardImage, card_keys: CardKeys
) -> None:
    card = powered(personalised_image)
    before = bytes(personalised_image.dfs[0xDF01].efs[0x0002].data)
    # No authentication: refused, plain or with a made-up MAC.
    assert raw(card, commands.update_binary(0, b"\x68", sfi=2, with_mac=False)).sw == 0x6982
    assert raw(card, commands.update_binary(0, b"\x68" + bytes(8), sfi=2)).sw == 0x6982
    messaging = authenticate(card, 1, card_keys.issuer_key(SERIAL))
    # Authenticated but plain CLA: still refused (access condition needs SM).
    assert raw(card, commands.update_binary(0, b"\x68", sfi=2, with_mac=False)).sw == 0x6982
    # Wrong MAC: 6988 and the session ends.
    assert raw(card, commands.update_binary(0, b"\x68" + bytes(8), sfi=2)).sw == 0x6988
    mac = messaging.command_mac(0x04, 0xD6, 0x82, 0, b"\x68")
    assert raw(card, commands.update_binary(0, b"\x68" + mac, sfi=2)).sw == 0x6982
    assert bytes(personalised_image.dfs[0xDF01].efs[0x0002].data) == before


def test_replayed_update_is_refused(personalised_image: CardImage, card_keys: CardKeys) -> None:
    card = powered(personalised_image)
    messaging = authenticate(card, 1, card_keys.issuer_key(SERIAL))
    data = b"\x00\x01"
    command = commands.update_binary(
        0, data + messaging.command_mac(0x04, 0xD6, 0x82, 0, data), sfi=2
    )
    assert raw(card, command).sw == 0x9000
    assert raw(card, command).sw == 0x6988  # same MAC again: SSC moved on


def test_meter_key_may_write_write_back_but_not_purse(
    issued_image: CardImage, card_keys: CardKeys
) -> None:
    from card_support import METER_NO

    card = powered(issued_image)
    messaging = authenticate(card, 2, card_keys.meter_card_key(METER_NO))
    data = b"\x00"
    mac = messaging.command_mac(0x04, 0xD6, 0x82, 0, data)
    assert raw(card, commands.update_binary(0, data + mac, sfi=2)).sw == 0x6982
    messaging = authenticate(card, 2, card_keys.meter_card_key(METER_NO))
    mac = messaging.command_mac(0x04, 0xD6, 0x85, 0, data)
    assert raw(card, commands.update_binary(0, data + mac, sfi=5)).sw == 0x9000


def test_failed_authentications_count_down_then_block(
    personalised_image: CardImage, card_keys: CardKeys, other_keys: CardKeys
) -> None:
    card = powered(personalised_image)
    wrong = other_keys.issuer_key(SERIAL)
    for left in range(KEY_TRIES - 1, -1, -1):
        rnd = raw(card, commands.get_challenge()).data
        r = raw(
            card, commands.external_authenticate(1, sm.external_cryptogram(wrong, rnd, bytes(8)))
        )
        assert r.sw == (0x6983 if left == 0 else 0x63C0 | left)
    rnd = raw(card, commands.get_challenge()).data
    right = card_keys.issuer_key(SERIAL)
    r = raw(card, commands.external_authenticate(1, sm.external_cryptogram(right, rnd, bytes(8))))
    assert r.sw == 0x6983  # blocked even for the right key
    assert personalised_image.keys[1].tries_left == 0


def test_success_resets_the_try_counter(
    personalised_image: CardImage, card_keys: CardKeys, other_keys: CardKeys
) -> None:
    card = powered(personalised_image)
    rnd = raw(card, commands.get_challenge()).data
    raw(
        card,
        commands.external_authenticate(
            1, sm.external_cryptogram(other_keys.issuer_key(SERIAL), rnd, bytes(8))
        ),
    )
    assert personalised_image.keys[1].tries_left == KEY_TRIES - 1
    authenticate(card, 1, card_keys.issuer_key(SERIAL))
    assert personalised_image.keys[1].tries_left == KEY_TRIES


def test_authentication_needs_a_fresh_challenge(
    personalised_image: CardImage, card_keys: CardKeys
) -> None:
    card = powered(personalised_image)
    key = card_keys.issuer_key(SERIAL)
    rnd = raw(card, commands.get_challenge()).data
    raw(card, commands.select(0xDF01))  # any other command uses the challenge up
    r = raw(card, commands.external_authenticate(1, sm.external_cryptogram(key, rnd, bytes(8))))
    assert r.sw == 0x6985


def test_internal_authenticate_proves_the_card(
    personalised_image: CardImage, card_keys: CardKeys
) -> None:
    card = VirtualCard(personalised_image)
    card.power_on()
    r = raw(card, commands.internal_authenticate(1, bytes(8)))
    assert r.sw == 0x6110
    answer = raw(card, commands.get_response(16)).data
    assert answer == sm.internal_auth_response(card_keys.issuer_key(SERIAL), bytes(8), SERIAL)


def test_transport_key_is_gone_after_activation(personalised_image: CardImage) -> None:
    card = VirtualCard(personalised_image)
    card.power_on()
    assert personalised_image.life_cycle == LIFE_OPERATIONAL
    rnd = raw(card, commands.get_challenge()).data
    r = raw(
        card,
        commands.external_authenticate(
            0, sm.external_cryptogram(transport_key(SERIAL), rnd, bytes(8))
        ),
    )
    assert r.sw == 0x6A88
    assert raw(card, commands.create_file(bytes(7))).sw == 0x6985


def test_image_file_round_trip_and_atomic_save(
    tmp_path: Path, personalised_image: CardImage
) -> None:
    path = tmp_path / "card.json"
    personalised_image.path = path
    personalised_image.save()
    again = CardImage.load(path)
    assert again.to_json() == personalised_image.to_json()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.glob(".vcard-*"))  # no temp file left
    path.write_text("{not json")
    with pytest.raises(FormatError, match="cannot read virtual card image"):
        CardImage.load(path)
    with pytest.raises(FormatError, match="no virtual card image"):
        CardImage.load(tmp_path / "missing.json")


def test_every_write_is_kept_in_the_image(tmp_path: Path, card_keys: CardKeys) -> None:
    from card_support import connect

    from cardlayout.card.operations import personalise

    path = tmp_path / "card.json"
    image = new_image(SERIAL, str(path))
    image.save()
    personalise(connect(VirtualCard(image)), card_keys)
    reloaded = CardImage.load(path)
    assert reloaded.life_cycle == LIFE_OPERATIONAL
    assert reloaded.dfs[0xDF01].efs[0x0005].data[0] == 0x68


def test_tear_stops_after_exactly_n_bytes(
    personalised_image: CardImage, card_keys: CardKeys
) -> None:
    from cardlayout.vcard.cos import PowerLost

    card = powered(personalised_image)
    messaging = authenticate(card, 1, card_keys.issuer_key(SERIAL))
    data = bytes(range(1, 11))
    card.arm_tear(3)
    with pytest.raises(PowerLost):
        card.process(
            commands.update_binary(
                0, data + messaging.command_mac(0x04, 0xD6, 0x82, 0, data), sfi=2
            ).to_bytes()
        )
    assert bytes(personalised_image.dfs[0xDF01].efs[0x0002].data[:4]) == bytes((1, 2, 3, 0x00))
    assert not card.powered


def test_read_binary_with_mac_is_authenticated(
    issued_image: CardImage, card_keys: CardKeys
) -> None:
    from cardlayout.errors import SecurityError

    card = powered(issued_image)
    assert raw(card, commands.read_binary(0, 256, sfi=2, with_mac=True)).sw == 0x6982
    messaging = authenticate(card, 1, card_keys.issuer_key(SERIAL))
    answer = raw(card, commands.read_binary(0, 256, sfi=2, with_mac=True))
    assert answer.ok and len(answer.data) == 22 + 8
    messaging.next_command()
    assert messaging.verify_response(answer.data) == bytes(issued_image.dfs[0xDF01].efs[2].data)
    # A response altered on the line does not verify.
    tampered = bytes([answer.data[0] ^ 1]) + answer.data[1:]
    other = authenticate(card, 1, card_keys.issuer_key(SERIAL))
    raw(card, commands.read_binary(0, 256, sfi=2, with_mac=True))
    other.next_command()
    with pytest.raises(SecurityError):
        other.verify_response(tampered)


def test_a_failed_authentication_ends_the_security_status(
    personalised_image: CardImage, card_keys: CardKeys
) -> None:
    card = powered(personalised_image)
    messaging = authenticate(card, 1, card_keys.issuer_key(SERIAL))
    # An EXTERNAL AUTHENTICATE without a challenge fails, and ends the session.
    assert raw(card, commands.external_authenticate(1, bytes(16))).sw == 0x6985
    data = b"\x00"
    mac = messaging.command_mac(0x04, 0xD6, 0x82, 0, data)
    assert raw(card, commands.update_binary(0, data + mac, sfi=2)).sw == 0x6982
