"""What a compromised server cannot do with device keys, in the real pages (Chromium) and
the real bot: a key it marks approved in the database, or hands a member's page with a
certificate from an untrusted phone or with a flipped byte, gets nothing sealed to it; an
approval with a bad signature is refused by the server; a caseworker's phone approves
nobody."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import nacl.public
import nacl.signing
import pytest
from playwright.async_api import Route
from sqlalchemy import select

from bot.i18n import t
from bot.people import find_actor
from crypto.boxes import key_id, multi_recipient_ids
from crypto.devices import Certified, CertRole, DeviceCert
from storage.models import DeviceKey, DeviceStatus, Note
from tests.conftest import RunningBot
from tests.handlers.conftest import Team
from tests.webapp.conftest import OfflinePage, Phone
from tests.webapp.test_miniapp_e2e import (
    approvals_state,
    approve,
    base_url,
    closed,
    ready,
    trust_admin_phone,
)
from webapp.api import cert_json

pytestmark = pytest.mark.bot_env(
    SAFERELAY_WEBAPP_URL="http://127.0.0.1/app/", SAFERELAY_WEB_PORT="0"
)


async def _person_id(bot: RunningBot, user_id: int) -> str:
    async with bot.core.sessions() as session:
        actor = await find_actor(session, bot.core.secrets, user_id)
    assert actor is not None
    return actor.person_id


def _forged_readers(anchor: bytes, genuine: dict[str, Any]) -> list[dict[str, Any]]:
    """What a compromised server could add to a member's readers: its own key, certified by
    an admin phone nobody trusted (claiming the team as that phone's issuer), and a real
    reader's entry with one byte of its key flipped (certificate unchanged otherwise)."""
    rogue_admin = nacl.signing.SigningKey.generate()
    rogue_admin_cert = DeviceCert(
        CertRole.ADMIN,
        "rogueadmin",
        bytes(nacl.public.PrivateKey.generate().public_key),
        bytes(rogue_admin.verify_key),
        anchor,
    )
    # Signed by itself: the team never signed it
    rogue_admin_sig = bytes(rogue_admin.sign(rogue_admin_cert.statement()).signature)
    reader_key = bytes(nacl.public.PrivateKey.generate().public_key)
    reader_cert = DeviceCert(
        CertRole.CASEWORKER,
        "roguereader",
        reader_key,
        bytes(nacl.signing.SigningKey.generate().verify_key),
        bytes(rogue_admin.verify_key),
    )
    untrusted = {
        "pk": reader_key.hex(),
        "kid": key_id(reader_key).hex(),
        "cert": cert_json(Certified(reader_cert, reader_cert.sign(rogue_admin))),
        "issuer": cert_json(Certified(rogue_admin_cert, rogue_admin_sig)),
    }
    flipped_key = bytearray(bytes.fromhex(genuine["pk"]))
    flipped_key[5] ^= 1
    flipped = json.loads(json.dumps(genuine))
    flipped["pk"] = flipped["cert"]["pk"] = bytes(flipped_key).hex()
    flipped["kid"] = key_id(bytes(flipped_key)).hex()
    return [untrusted, flipped]


async def test_keys_without_a_chain_to_the_team_key_get_nothing_from_a_members_page(
    bot: RunningBot, team: Team, phones: dict[str, Phone]
) -> None:
    core = bot.core
    # Given Mina's phone approved the real way (coordinator, then the admin's phone)
    await approve(bot, team, phones, "mina")
    mina_id = await _person_id(bot, team.mina.user_id)
    async with core.sessions() as session:
        mina_key = await session.scalar(
            select(DeviceKey.public_key).where(DeviceKey.person_id == mina_id)
        )
        admin_signing = await session.scalar(
            select(DeviceKey.signing_key).where(DeviceKey.cert_issuer.is_not(None)).limit(1)
        )
    assert mina_key is not None and admin_signing is not None
    # And a key a compromised server marked approved for Mina in the database directly
    planted = bytes(nacl.public.PrivateKey.generate().public_key)
    async with core.sessions() as session, session.begin():
        session.add(
            DeviceKey(
                person_id=mina_id,
                public_key=planted,
                signing_key=bytes(nacl.signing.SigningKey.generate().verify_key),
                status=DeviceStatus.APPROVED.value,
                cert_issuer=admin_signing,
                cert_signature=bytes(64),
            )
        )
    # And, on the way to the member's page, readers the server could add to the list: one
    # certified by an untrusted admin phone, one real entry with a flipped byte
    page_readers: list[list[dict[str, Any]]] = []
    anchor = core.secrets.team_verify_key
    assert anchor is not None

    async def tamper(route: Route) -> None:
        response = await route.fetch()
        answer = await response.json()
        [genuine] = answer["readers"]  # the server itself lists Mina's real phone only
        answer["readers"] = [genuine, *_forged_readers(anchor, genuine)]
        page_readers.append(answer["readers"])
        await route.fulfill(response=response, json=answer)

    page = await phones["member"].open(base_url(bot) + "member.en.html")
    await ready(page)
    await page.page.route("**/api/recipients", tamper)

    # When the member writes
    await page.page.fill("textarea[name=text]", "hello")
    await page.page.click("#message-form button[type=submit]")
    await closed(page)

    # Then the page sealed to the team key and Mina's real phone only
    [offered] = page_readers
    assert len(offered) == 3
    async with core.sessions() as session:
        note = (await session.scalars(select(Note).where(Note.from_member.is_(True)))).one()
    kids = multi_recipient_ids(note.sealed)
    assert kids == [key_id(core.secrets.team_sealer.public_key), key_id(mina_key)]
    for shown in offered[1:]:
        assert bytes.fromhex(shown["kid"]) not in kids
    assert key_id(planted) not in kids


async def test_an_approval_with_a_bad_signature_is_refused_and_a_caseworker_approves_nobody(
    bot: RunningBot, team: Team, phones: dict[str, Phone]
) -> None:
    core = bot.core
    # Given the admin's phone trusted, and Joon's phone waiting
    await trust_admin_phone(bot, phones)
    joon = await phones["joon"].open(base_url(bot) + "staff.en.html")
    await ready(joon, "pending")
    shown = (await joon.page.text_content("#fingerprint") or "").strip()

    # When the admin approves, but the signature is changed on its way (one flipped byte)
    admin = await phones["admin"].open(base_url(bot) + "staff.en.html")
    assert await approvals_state(admin) == "ready"
    statuses: list[int] = []

    async def flip(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        signature = bytearray(bytes.fromhex(body["signature"]))
        signature[0] ^= 1
        body["signature"] = bytes(signature).hex()
        response = await route.fetch(post_data=json.dumps(body))
        statuses.append(response.status)
        await route.fulfill(response=response)

    await admin.page.route("**/api/approve", flip)
    item = admin.page.locator("#waiting li", has_text=shown)
    await item.locator("button.approve").click()
    await admin.page.wait_for_selector(f"#status:has-text('{t('en', 'webapp_failed')}')")

    # Then the server refused it, and Joon's phone is still waiting
    assert statuses == [422]
    joon_id = await _person_id(bot, team.joon.user_id)
    async with core.sessions() as session:
        status = await session.scalar(
            select(DeviceKey.status).where(DeviceKey.person_id == joon_id)
        )
    assert status == "pending"

    # When the same approval goes through untouched, it is taken
    await admin.page.unroute("**/api/approve")
    await item.locator("button.approve").click()
    await admin.page.wait_for_selector(
        f"#waiting li:has-text('{t('en', 'staff_webapp_approved')}')"
    )
    joon = await phones["joon"].open(base_url(bot) + "staff.en.html")
    await ready(joon)

    # And Joon's phone, approved but a caseworker's, shows no approvals and may not approve
    assert await joon.page.is_hidden("#approvals")
    await _mina_waits(bot, phones)
    async with core.sessions() as session:
        joon_key = await session.scalar(
            select(DeviceKey.public_key).where(DeviceKey.person_id == joon_id)
        )
        waiting = await session.scalar(
            select(DeviceKey.id).where(DeviceKey.status == DeviceStatus.PENDING.value)
        )
    assert joon_key is not None and waiting is not None
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": "tma " + phones["joon"].init_data()}
        body = {"public_key": joon_key.hex(), "device_id": waiting, "signature": "00" * 64}
        for call in ("pending", "approve"):
            async with http.post(base_url(bot) + f"api/{call}", json=body, headers=headers) as r:
                assert r.status == 403, call


async def _mina_waits(bot: RunningBot, phones: dict[str, Phone]) -> OfflinePage:
    page = await phones["mina"].open(base_url(bot) + "staff.en.html")
    await ready(page, "pending")
    return page
