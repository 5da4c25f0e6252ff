"""Issue 16's story in a real browser: Debian's Chromium driven by Playwright, two people on the
web client that Veche serves.

Two users register in two browser contexts, start an encrypted direct chat, write both ways,
reply, edit, react, send an image the other sees as a thumbnail and downloads byte-identical.
The second user then signs in from a new browser (a fresh context: no keys at all) and reads the
history after entering the recovery key (key backup), and the two verify each other by comparing
emoji (SAS). Screenshots of every step go to tests/web_client/artifacts/<backend>-<time>/. Every
request either page made is checked to have stayed on the Veche origin.
"""

from __future__ import annotations

import io
import random
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery web"
STEP_MS = 90_000
NOTED = """
window.__shown = [];
const Real = window.Notification;
window.Notification = class extends Real {
  constructor(title, options) { super(title, options); window.__shown.push(`${title}|${options?.body}`); }
};
"""


@pytest.fixture(scope="session")
def chromium() -> Path:
    # Playwright's own browser download is unreachable here; Debian's Chromium is not.
    if not CHROMIUM.exists():
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, capture_output=True,
                       timeout=900)
    assert CHROMIUM.exists(), "Chromium is needed (apt-get install chromium)"
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _image() -> bytes:
    """A photo-sized PNG whose pixels are not uniform, so a thumbnail differs from the original."""
    rnd = random.Random(16)
    im = Image.new("RGB", (1200, 800))
    for x in range(0, 1200, 40):
        for y in range(0, 800, 40):
            im.paste((rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)), (x, y, x + 40, y + 40))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


class Person:
    """One browser context (one browser profile) of one user."""

    def __init__(self, browser: object, base_url: str, name: str, shots: Path, requests: list[str],
                 *, notifications: bool = False) -> None:
        self.name = name
        self.shots = shots
        self.context = browser.new_context(viewport={"width": 1100, "height": 760},  # type: ignore[attr-defined]
                                           accept_downloads=True)
        self.context.on("request", lambda r: requests.append(r.url))
        if notifications:
            # The permission a click on "Notify me" would have asked for; each notification the
            # page shows (through the real API) is also noted where the test can read it.
            self.context.grant_permissions(["notifications"], origin=base_url)
            self.context.add_init_script(NOTED)
        self.page = self.context.new_page()
        self.page.set_default_timeout(STEP_MS)
        self.console: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
        self.page.goto(base_url + "/")

    def shot(self, step: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{step}-{self.name}.png"))

    def last_words(self) -> str:
        """On failure: a screenshot and the page's errors, for the log."""
        try:
            if not self.page.is_closed():
                self.shot("99-failure")
        except Exception:  # the failure itself may have taken the page down
            pass
        return f"{self.name} console errors: {self.console[-8:]}"

    def sign_up_or_in(self, user: str, *, register: bool) -> None:
        p = self.page
        if register:
            p.get_by_test_id("tab-register").click()
        p.fill("input[name=username]", user)
        p.fill("input[name=password]", PASSWORD)
        p.get_by_test_id("submit").click()

    def message(self, text: str) -> object:
        return self.page.get_by_test_id("message").filter(has_text=text)

    def send(self, text: str) -> None:
        self.page.get_by_test_id("composer").fill(text)
        self.page.get_by_test_id("send").click()

    def sees(self, text: str) -> None:
        self.message(text).first.wait_for()

    def act_on(self, text: str, action: str) -> None:
        msg = self.message(text).first
        msg.hover()
        msg.get_by_test_id(action).click()


def test_two_people_chat_encrypted_in_the_browser(homeserver, browser, tmp_path: Path) -> None:
    people: list[Person] = []
    try:
        _story(homeserver, browser, tmp_path, people)
    except BaseException:
        for person in people:
            print(person.last_words())
        raise


def _story(homeserver, browser, tmp_path: Path, people: list[Person]) -> None:
    base = homeserver.base_url
    shots = ARTIFACTS / f"{homeserver.backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    shots.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {shots}")
    requests: list[str] = []
    tag = secrets.token_hex(3)
    alice_id, bob_id = f"alice{tag}", f"bob{tag}"
    server = homeserver.server_name

    # Both register; each is shown a recovery key once encryption is set up.
    alice = Person(browser, base, "alice", shots, requests)
    bob = Person(browser, base, "bob", shots, requests)
    people += [alice, bob]
    alice.shot("01-sign-in-screen")
    keys = {}
    for person, user in ((alice, alice_id), (bob, bob_id)):
        person.sign_up_or_in(user, register=True)
        key = person.page.get_by_test_id("recovery-key")
        key.wait_for()
        keys[person.name] = key.inner_text()
        assert len(keys[person.name].replace(" ", "")) == 48, keys[person.name]
        person.shot("02-recovery-key")
        person.page.get_by_test_id("recovery-saved").click()

    # Alice starts an encrypted direct chat; Bob accepts the invite.
    a = alice.page
    a.get_by_test_id("new-dm").click()
    a.fill("input[name=user-id]", f"@{bob_id}:{server}")
    a.get_by_test_id("create").click()
    a.get_by_test_id("encrypted").wait_for()
    bob.page.get_by_test_id("accept-invite").click()
    bob.page.get_by_test_id("encrypted").wait_for()
    bob.shot("03-dm-accepted")

    # Messages both ways, decrypted on the other side; Alice sees that Bob has read hers and
    # that he is typing before his answer arrives.
    alice.send("Hello Bob, this is end-to-end encrypted")
    bob.sees("Hello Bob, this is end-to-end encrypted")
    a.get_by_test_id("read-receipts").filter(has_text=f"Seen by {bob_id}").wait_for()
    bob.page.get_by_test_id("composer").fill("Hi Alice, loud and clear")
    a.get_by_test_id("typing").filter(has_text=f"{bob_id} typing").wait_for()
    alice.shot("04-typing")
    bob.page.get_by_test_id("send").click()
    alice.sees("Hi Alice, loud and clear")
    a.get_by_test_id("typing").wait_for(state="detached")
    alice.shot("04-messages")

    # A reply, an edit, a reaction.
    alice.act_on("Hi Alice, loud and clear", "reply")
    alice.send("Replying to your message")
    reply = bob.message("Replying to your message").first
    reply.get_by_test_id("reply-quote").filter(has_text="Hi Alice, loud and clear").wait_for()
    bob.shot("05-reply")

    bob.act_on("Hi Alice, loud and clear", "edit")
    bob.send("Hi Alice, loud and clear (now edited)")
    edited = alice.message("Hi Alice, loud and clear (now edited)").first
    edited.get_by_test_id("edited").wait_for()
    alice.shot("06-edit")

    alice.act_on("now edited", "react-👍")
    bob.message("now edited").first.get_by_test_id("reaction").filter(has_text="👍 1").wait_for()
    bob.shot("07-reaction")

    # A thread: Bob answers Alice's first message in a thread, Alice reads it there.
    bob.act_on("Hello Bob, this is end-to-end encrypted", "thread")
    bob.page.get_by_test_id("thread-composer").fill("A word in a thread")
    bob.page.get_by_test_id("thread-send").click()
    alice.message("Hello Bob, this is end-to-end encrypted").first.get_by_test_id("thread-summary").click()
    a.get_by_test_id("thread-panel").get_by_test_id("message").filter(has_text="A word in a thread").wait_for()
    assert alice.page.get_by_test_id("timeline").get_by_text("A word in a thread").count() == 0
    alice.shot("08-thread")
    a.get_by_test_id("thread-panel").get_by_title("Close the thread").click()
    bob.page.get_by_test_id("thread-panel").get_by_title("Close the thread").click()

    # An image: encrypted upload, a thumbnail on the other side, a byte-identical download.
    original = _image()
    picture = tmp_path / "holiday.png"
    picture.write_bytes(original)
    a.get_by_test_id("file-input").set_input_files(str(picture))
    tile = bob.message("holiday.png").first
    thumb = tile.get_by_test_id("thumbnail")
    thumb.wait_for()
    bob.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    natural = thumb.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [320, 213], f"the thumbnail is not the 320px one: {natural}"
    bob.shot("09-image")
    with bob.page.expect_download() as dl:
        tile.get_by_test_id("download").click()
    saved = tmp_path / "downloaded.png"
    dl.value.save_as(saved)
    assert saved.read_bytes() == original, "the downloaded image differs from the uploaded one"

    # Before leaving, Bob checks that the server keeps his message keys (his and Alice's
    # sessions): the backup uploads in the background, a few seconds after the keys arrive.
    bob.page.get_by_test_id("open-settings").click()
    status = bob.page.get_by_test_id("backup-status")
    deadline = time.monotonic() + STEP_MS / 1000
    while not re.search(r"Key backup: ([2-9]|\d\d+) message keys saved", status.inner_text()):
        assert time.monotonic() < deadline, status.inner_text()
        time.sleep(0.5)
    bob.shot("10-backup-done")

    # Bob's new browser: no keys until he gives his recovery key, then the history reads.
    bob.context.close()
    bob2 = Person(browser, base, "bob-new", shots, requests, notifications=True)
    people.append(bob2)
    bob2.sign_up_or_in(bob_id, register=False)
    bob2.page.get_by_test_id("recovery-input").fill(keys["bob"])
    bob2.shot("11-recovery-prompt")
    bob2.page.get_by_test_id("recovery-restore").click()
    restored = bob2.page.get_by_test_id("restored-count")
    restored.wait_for()
    assert int(restored.inner_text().split()[0]) >= 1, restored.inner_text()
    bob2.page.get_by_test_id("restore-done").click()
    bob2.page.get_by_test_id("room").first.click()
    for text in ("Hello Bob, this is end-to-end encrypted", "Replying to your message",
                 "Hi Alice, loud and clear (now edited)", "💬 1 reply"):
        bob2.sees(text)
    bob2.page.get_by_test_id("thumbnail").wait_for()
    assert bob2.page.get_by_test_id("undecryptable").count() == 0
    bob2.shot("12-history-restored")

    # Bob's sessions: the old browser's and this one; he signs the old one out with his password.
    bob2.page.get_by_test_id("open-settings").click()
    device = bob2.page.get_by_test_id("own-device-id").inner_text()
    sessions = bob2.page.get_by_test_id("session")
    bob2.page.wait_for_function("() => document.querySelectorAll('[data-testid=session]').length === 2")
    assert device in sessions.filter(has_text="this session").inner_text()
    bob2.shot("13-sessions")
    bob2.page.get_by_test_id("session-sign-out").click()
    bob2.page.fill("input[name=session-password]", PASSWORD)
    bob2.page.get_by_test_id("session-sign-out-confirm").click()
    bob2.page.wait_for_function("() => document.querySelectorAll('[data-testid=session]').length === 1")
    assert device in sessions.inner_text()
    bob2.page.get_by_text("Close").click()

    # Alice verifies Bob's new session by emoji.
    a.get_by_test_id("verify-user").click()
    a.get_by_test_id(f"verify-device-{device}").click()
    bob2.page.get_by_test_id("verification-accept").click()
    a.get_by_test_id("verification-start").click()
    emoji = {}
    for person in (alice, bob2):
        sas = person.page.get_by_test_id("sas-emoji")
        sas.wait_for()
        emoji[person.name] = sas.locator("li").evaluate_all("items => items.map(i => i.dataset.name)")
        person.shot("14-sas-emoji")
    assert len(emoji["alice"]) == 7 and emoji["alice"] == emoji["bob-new"], emoji
    for person in (alice, bob2):
        person.page.get_by_test_id("sas-match").click()
    for person in (alice, bob2):
        person.page.get_by_test_id("verification-done").wait_for()
        person.shot("15-verified")

    # Alice opens a public room with an address; Bob joins it from a matrix.to link. While he
    # looks at it, Alice writes in their direct chat: his browser notifies him.
    for person in (alice, bob2):
        person.page.get_by_test_id("verification-close").click()
    a.get_by_test_id("new-room").click()
    a.fill("input[name=room-name]", "Lobby")
    a.fill("input[name=room-alias]", f"lobby{tag}")
    a.get_by_label("Private and end-to-end encrypted").uncheck()
    a.get_by_test_id("create").click()
    a.get_by_test_id("room-name").filter(has_text="Lobby").wait_for()
    bob2.page.fill("input[name=join]", f"https://matrix.to/#/%23lobby{tag}%3A{server}")
    bob2.page.get_by_test_id("join").click()
    bob2.page.get_by_test_id("room-name").filter(has_text="Lobby").wait_for()
    bob2.page.get_by_test_id("timeline").get_by_text(f"{bob_id} joined").wait_for()
    bob2.shot("16-joined-by-link")
    a.get_by_test_id("room").filter(has_text=bob_id).click()
    alice.send("Psst, over here")
    bob2.page.wait_for_function("() => window.__shown.some(n => n.includes('Psst, over here'))")
    shown = bob2.page.evaluate("window.__shown")
    assert shown == [f"{alice_id}|{alice_id}: Psst, over here"], shown

    # Back in the direct chat, a "New" line stands where he had read up to (m.fully_read).
    bob2.page.get_by_test_id("room").filter(has_text=alice_id).click()
    marker = bob2.page.get_by_test_id("read-marker")
    marker.wait_for()
    after = marker.evaluate("m => m.nextElementSibling ? m.nextElementSibling.textContent : ''")
    assert "Psst, over here" in after, after
    bob2.shot("17-read-marker")

    # The installed app opens with no network on the rooms last seen, says so, and recovers
    # when the network returns, without a reload.
    a.evaluate("navigator.serviceWorker.ready.then(() => true)")
    alice.context.set_offline(True)
    a.reload()
    a.get_by_role("status").filter(has_text="retrying").wait_for()
    a.locator(".rooms li.cached").first.wait_for()
    alice.shot("18-offline")
    alice.context.set_offline(False)
    a.get_by_role("status").wait_for(state="detached")
    a.get_by_test_id("room").first.wait_for()

    # Done when 2: nothing left the Veche origin (blob: URLs are the page's own memory).
    outside = [u for u in requests if not (u.startswith(base + "/") or u.startswith("blob:") or u.startswith("data:"))]
    assert requests and not outside, f"requests left the Veche origin: {outside[:10]}"
    assert any("/_matrix/client/" in u for u in requests) and any(u.endswith(".wasm") for u in requests)
    alice.context.close()
    bob2.context.close()
