"""The sandbox's chat page in a real browser: headless Chromium from the distribution's packages (Debian's
``chromium`` and ``chromium-driver``), driven by Selenium through /usr/bin/chromedriver (nothing is downloaded).

The whole sandbox runs in this process (emulator + page + demo bot + bridge, tests/integration/sandboxing.py);
Selenium's blocking calls run in a worker thread so the trio loop keeps serving the browser. What the framework
received is read from the demo bot's log lines. Screenshots of each step are saved under
``$ARTIFACTS_DIR/sandbox/`` (default ``.ci/artifacts/sandbox/``; .ci/run prints the folder).

Without Chromium the test is skipped with the reason; with ``REQUIRE_BROWSER=1`` (set by .ci/run, which installs
Chromium) a missing browser is a failure instead. Waits are failure guards, never measurements.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from relay.sandbox.emulator import defaults
from relay.sandbox.run import RunningSandbox
from tests.integration.sandboxing import GUARD, FrameworkLog, framework_log, make_png, running_sandbox

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: the flags that work in containers and CI: no sandbox (root), no GPU, no network of its own
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,860",
)

T = TypeVar("T")


def missing_browser() -> str | None:
    """Why the browser test cannot run here (None: it can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: install Debian's {package} (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("ARTIFACTS_DIR") or ROOT / ".ci" / "artifacts") / "sandbox"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def browser_ready() -> None:
    reason = missing_browser()
    if reason is None:
        return
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


class Page:
    """The chat page in Chromium; every method blocks (call it through :meth:`run`)."""

    def __init__(self, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)

    @staticmethod
    async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    def wait(self, condition: Callable[[Any], T]) -> T:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.wait import WebDriverWait

        # the page re-renders a list when something changes: an element read meanwhile is stale, read again
        return WebDriverWait(self.driver, GUARD, ignored_exceptions=(StaleElementReferenceException,)).until(condition)

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.wait(lambda d: self.all("#live-status.online") and self.all("#channels li.current"))
        self.wait(lambda d: self.all("#messages .message"))

    def be(self, name: str) -> None:
        from selenium.webdriver.support.select import Select

        Select(self.css("#me")).select_by_visible_text(name)

    def say(self, text: str, *, image: Path | None = None) -> None:
        if image is not None:
            self.css("#file-input").send_keys(str(image))
            self.wait(lambda d: self.css("#attached").text == image.name)
        box = self.css("#composer-text")
        box.send_keys(text)
        self.css("#send").click()
        self.wait(lambda d: self.css("#composer-text").get_attribute("value") == "")

    def message(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait for a rendered message matching ``predicate`` (over its id, author, content, quote, images)."""

        def find(_: Any) -> dict[str, Any] | None:
            for item in reversed(self.all("#messages .message")):
                seen = self.read(item)
                if predicate(seen):
                    return seen
            return None

        return self.wait(find)

    def read(self, item: Any) -> dict[str, Any]:
        script = """
            const item = arguments[0];
            const text = (selector) => { const n = item.querySelector(selector); return n ? n.textContent : null; };
            return {
                id: item.dataset.messageId,
                author: text(".author"),
                content: text(".content"),
                quote: text(".reply"),
                quoted_id: item.querySelector(".reply") ? item.querySelector(".reply").dataset.quotedId : null,
                images: [...item.querySelectorAll("img.attachment")].map((i) => ({
                    src: i.src, loaded: i.complete && i.naturalWidth > 0,
                })),
            };
        """
        result: dict[str, Any] = self.driver.execute_script(script, item)
        return result

    def gone(self, message_id: str) -> None:
        self.wait(lambda d: not self.all(f'#messages .message[data-message-id="{message_id}"]'))

    def click(self, selector: str) -> None:
        self.css(selector).click()

    def panel(self) -> list[str]:
        return [li.get_attribute("data-route") for li in self.all("#requests li")]

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))

    def quit(self) -> None:
        self.driver.quit()


async def expect(framework: FrameworkLog, predicate: Callable[[str], bool]) -> str:
    return await framework.wait_for(predicate)


@pytest.mark.usefixtures("browser_ready")
async def test_the_chat_page_in_chromium(tmp_path: Path, artifacts: Path) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(make_png())
    with trio.fail_after(4 * GUARD):
        async with framework_log() as framework, running_sandbox(tmp_path / "sandbox") as running:
            await expect(framework, lambda line: "verify: ok" in line)
            page = await Page.run(Page, tmp_path / "profile")
            try:
                await _walk_through(page, running, framework, image=image, artifacts=artifacts)
            except BaseException:
                await Page.run(page.screenshot, artifacts / "failure.png")
                raise
            finally:
                await Page.run(page.quit)


async def _walk_through(
    page: Page, running: RunningSandbox, framework: FrameworkLog, *, image: Path, artifacts: Path
) -> None:
    run = Page.run
    erin = str(defaults.ERIN)
    await run(page.open, running.url)
    await run(page.screenshot, artifacts / "01-opened.png")

    # type `echo hi` as Bob: the demo bot answers `hi`, quoting Bob's message
    await run(page.be, "Bob")
    await run(page.say, "echo hi")
    asked = await run(page.message, lambda m: m["author"] == "Bob" and m["content"] == "echo hi")
    answer = await run(page.message, lambda m: m["author"] == "relay-bot" and m["content"] == "hi")
    assert answer["quoted_id"] == asked["id"]
    assert "echo hi" in answer["quote"] and "Bob" in answer["quote"]
    await expect(framework, lambda line: line.startswith("GroupMessage") and "from Bob" in line and "'echo hi'" in line)
    await run(page.screenshot, artifacts / "02-echo.png")

    # upload an image as Alice: it renders, and the framework gets an Image segment
    await run(page.be, "Alice")
    await run(page.say, "a dot", image=image)
    shown = await run(page.message, lambda m: m["content"] == "a dot" and m["images"] and m["images"][0]["loaded"])
    assert shown["author"] == "Alice" and shown["images"][0]["src"].startswith(running.emulator.origin)
    await expect(framework, lambda line: "from Alice" in line and "'a dot' [Image]" in line)
    await run(page.screenshot, artifacts / "03-image.png")

    # delete the bot's message: it disappears, and the framework gets the recall
    await run(page.click, f'#messages .message[data-message-id="{answer["id"]}"] button[data-action="delete"]')
    await run(page.gone, answer["id"])
    await expect(framework, lambda line: line.startswith("GroupRecallEvent"))
    # the quote of a deleted message says so
    await run(page.message, lambda m: m["id"] == asked["id"])
    await run(page.screenshot, artifacts / "04-deleted.png")

    # make Erin join: MemberJoinEvent reaches the framework, and the demo bot welcomes her
    await run(page.click, f'#outside li[data-user-id="{erin}"] button[data-action="join"]')
    await run(page.wait, lambda d: page.all(f'#members li[data-user-id="{erin}"]'))
    await expect(framework, lambda line: line.startswith("MemberJoinEvent: Erin"))
    await run(page.message, lambda m: m["author"] == "relay-bot" and "welcome" in (m["content"] or ""))
    await run(page.screenshot, artifacts / "05-joined.png")

    # reply `recall` to Alice's picture as Bob: the demo bot recalls it, and the panel shows the bridge's DELETE
    await run(page.be, "Bob")
    await run(page.click, f'#messages .message[data-message-id="{shown["id"]}"] button[data-action="reply"]')
    await run(page.wait, lambda d: page.css("#replying-to").text == "Replying to Alice")
    await run(page.say, "recall")
    order = await run(page.message, lambda m: m["content"] == "recall")
    assert order["quoted_id"] == shown["id"]
    await run(page.gone, shown["id"])
    routes = await run(
        page.wait, lambda d: "DELETE /channels/{channel_id}/messages/{message_id}" in page.panel() and page.panel()
    )
    assert "POST /channels/{channel_id}/messages" in routes
    assert "GET /gateway/bot" in routes
    await run(page.screenshot, artifacts / "06-recalled.png")
