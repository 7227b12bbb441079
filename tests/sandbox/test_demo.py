"""The demo's parts in this test's event loop: the set-up, the page's guard and routes, a
kept data directory, and the sandbox hooks the demo relies on."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.i18n import t
from crypto.keyfile import check_passphrase
from crypto.keystore import unlock_team_key
from sandbox import Call, FakeBotApi
from sandbox.demo import SAMPLES, Demo, generate_passphrase, make_layout, start_demo, stop_demo
from sandbox.page import DemoPage


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Demo, DemoPage]]:
    demo = await start_demo(make_layout(tmp_path / "kept"))
    page = DemoPage(demo)
    await page.start()
    try:
        await demo.enrol_samples()
        yield demo, page
    finally:
        await page.stop()
        await stop_demo(demo)


async def test_the_sample_people_are_enrolled_with_demo_timers(
    running: tuple[Demo, DemoPage],
) -> None:
    demo, _ = running
    # Every sample but the stranger went through an invite and has the bot's answer
    assert [pane.key for pane in demo.panes.values()] == [s.key for s in SAMPLES]
    for key, language in (("member-ko", "ko"), ("member-en", "en"), ("member-zh", "zh")):
        user = demo.panes[key].user
        assert user.language_code == language
        menu = [label for m in user.inbox() for label, _ in m.buttons()]
        assert t(language, "menu_checkin") in menu
    assert demo.panes["stranger"].user.inbox() == []
    # Short timers, so clearing and escalation can be watched
    assert demo.settings.clear_after_minutes == 2
    assert demo.settings.escalate_minutes == 1
    # The passphrase printed once really opens the team key
    assert demo.passphrase is not None
    unlock_team_key(demo.layout.team_key, demo.passphrase)


async def test_the_page_answers_only_its_own_address_from_this_machine(
    running: tuple[Demo, DemoPage],
) -> None:
    _, page = running
    base = page.url.rsplit("/", 2)[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(page.url + "state") as response:
            assert response.status == 200
            state = await response.json()
        assert len(state["panes"]) == len(SAMPLES)
        # Another local user who finds the port but not the key gets nothing
        for wrong in ("/", "/state", "/x" + page.key[1:] + "/state"):
            async with http.get(base + wrong) as response:
                assert response.status == 404
        # A page on another name that resolves to 127.0.0.1 (DNS rebinding) gets nothing
        async with http.get(page.url + "state", headers={"Host": "evil.example"}) as response:
            assert response.status == 404
        # A form posted from another site is refused: JSON only
        async with http.post(
            page.url + "send", data="pane=member-en&text=hi", headers={"Content-Type": "text/plain"}
        ) as response:
            assert response.status == 415
        # Bad input gets a clear answer
        async with http.post(page.url + "send", json={"pane": "nobody", "text": "hi"}) as response:
            assert response.status == 404
            assert (await response.json())["error"] == "There is no such phone."
        async with http.post(page.url + "send", json={"pane": "member-en", "text": " "}) as r:
            assert r.status == 400
        async with http.post(
            page.url + "press", json={"pane": "member-en", "message_id": 9999, "data": "x"}
        ) as response:
            assert response.status == 404


async def test_the_demos_bot_api_has_no_unauthenticated_control_api(
    running: tuple[Demo, DemoPage],
) -> None:
    demo, _ = running
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{demo.api.port}/_fake/state") as response:
            assert response.status == 404


async def test_a_stranger_added_through_the_page_gets_the_neutral_line(
    running: tuple[Demo, DemoPage],
) -> None:
    demo, page = running
    async with aiohttp.ClientSession() as http:
        async with http.post(page.url + "people", json={"kind": "stranger", "language": "zh"}) as r:
            key = (await r.json())["pane"]
        async with http.post(page.url + "send", json={"pane": key, "text": "你好"}) as r:
            assert r.status == 200
    reply = await demo.panes[key].user.wait_for_message(timeout=10)
    assert reply.text == t("zh", "stranger")
    assert page.log and all(
        set(entry) == {"n", "at", "method", "chat", "status"} for entry in page.log
    )


async def test_a_kept_data_directory_finds_its_people_again(tmp_path: Path) -> None:
    # Given a demo run with --data DIR that was stopped
    first = await start_demo(make_layout(tmp_path / "kept"))
    try:
        await first.enrol_samples()
        added = await first.add_member("en")
        await added.user.press("English")
        await added.user.wait_for_message("Your name here is", timeout=10)
    finally:
        await stop_demo(first)
    # When it runs again on the same directory
    again = await start_demo(make_layout(tmp_path / "kept"))
    try:
        await again.enrol_samples()
        # Then the keys are kept (no new passphrase) and nobody is invited twice
        assert again.passphrase is None
        assert [pane.key for pane in again.panes.values()] == [
            *(s.key for s in SAMPLES),
            added.key,
        ]
        assert again.api.calls_to("sendMessage") == []
        # And a member can go on at once: the bot answers them as enrolled
        await again.send("member-en", "/menu")
        menu = await again.panes["member-en"].user.wait_for_message(t("en", "menu_title"))
        assert menu.buttons()
    finally:
        await stop_demo(again)


async def test_a_members_chat_clears_itself_after_the_timer(tmp_path: Path) -> None:
    # Given the demo with its clearing timer shortened from 2 minutes to 3 seconds
    demo = await start_demo(
        make_layout(tmp_path / "kept"), {"SAFERELAY_CLEAR_AFTER_MINUTES": "0.05"}
    )
    try:
        await demo.enrol_samples()
        member = demo.panes["member-en"].user
        # When a member writes to their caseworker
        await demo.send("member-en", "I moved flats")
        await member.wait_for_message(t("en", "relay_sent"))
        # Then their phone ends up empty, both sides, without anyone touching it
        await demo.api.wait_for(lambda: demo.api.visible(member.chat_id) == [], timeout=60)
        # While the staff chats keep theirs (they clear after hours, not minutes)
        assert demo.api.visible(demo.panes["caseworker"].user.chat_id)
    finally:
        await stop_demo(demo)


def test_the_generated_passphrase_passes_the_key_files_check() -> None:
    passphrases = {generate_passphrase() for _ in range(5)}
    assert len(passphrases) == 5
    for passphrase in passphrases:
        check_passphrase(passphrase)


async def test_an_observer_sees_each_answered_call_until_it_stops() -> None:
    seen: list[Call] = []
    async with FakeBotApi() as api, aiohttp.ClientSession() as http:
        stop = api.observe(seen.append)
        url = f"{api.base_url}{api.token}/getMe"
        async with http.get(url) as response:
            assert response.status == 200
        # Called before the answer leaves, so the effect is visible to whoever is told
        assert [(c.method, c.status) for c in seen] == [("getMe", 200)]
        stop()
        async with http.get(url):
            pass
        assert len(seen) == 1


def test_a_port_in_use_gets_one_clear_line_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["demo", "--port", str(taken.getsockname()[1])])
    assert code == 2
    assert "saferelay: Could not start the demo:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
