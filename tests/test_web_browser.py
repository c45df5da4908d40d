"""The operator console in a real browser: headless Chromium (Debian's chromium + chromium-driver) through Selenium,
against the console served by uvicorn on 127.0.0.1, over the real engine (seed corpus, the bundled model).

Covers what only a browser shows: logging in and out with the cookie, following a citation to its highlighted
passage, markup in documents and questions staying text (no script runs, no `javascript:` link exists), a vote
clicked in the fake Discord appearing on the Questions page, and every page at laptop and phone sizes (screenshots
kept in a temporary folder named at the end of the run; phone pages must not scroll sideways).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord.gateway
import discord.http
import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.engine import Engine
from bot.question_log import QuestionLog
from bot.web import listen, serving
from ingest.pipeline import IngestPipeline
from tests import browser
from tests.console_data import SEOUL, XSS_QUESTION, add_hostile_web_record, add_markup_documents, seed_log
from tests.fake_discord import FakeDiscord

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.timeout(180)]

if browser.missing():
    pytest.skip(browser.missing() or "", allow_module_level=True)

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TOKEN = "operator-token-for-tests-0123456789"
WAIT = 15
TRAINING = 600  # seconds a training run may take on a 2-core machine


@dataclass
class Site:
    url: str
    settings: Settings
    engine: Engine
    log: QuestionLog
    ids: dict[str, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("console")
    # The real model: the coverage gaps group questions by meaning, as an operator would see them.
    settings = Settings(data_dir=root / "data", web_token=SecretStr(TOKEN), _env_file=None)  # type: ignore[call-arg]
    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([Path(__file__).resolve().parent.parent / "corpus"])
    add_markup_documents(engine, root / "extra")
    add_hostile_web_record(engine)
    log = QuestionLog.for_settings(settings)
    ids = seed_log(engine, log)
    sock = listen("127.0.0.1", 0)
    with serving(settings, engine, log, sock) as url:
        yield Site(url.rstrip("/"), settings, engine, log, ids)
    log.close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with browser.chromium(tmp_path_factory.mktemp("chromium-profile")) as chrome:
        yield chrome  # type: ignore[misc]


def log_in(driver: WebDriver, site: Site, path: str = "/") -> None:
    driver.delete_all_cookies()
    driver.get(site.url + path)
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.ID, "token")))
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, WAIT).until(lambda d: "/login" not in d.current_url)


def text_of_element(element: Any, selector: str) -> str:
    return str(element.find_element(By.CSS_SELECTOR, selector).get_attribute("textContent"))


def text_of(driver: WebDriver, selector: str) -> str:
    """The exact text of an element (textContent: no whitespace folding, unlike WebDriver's `.text`)."""
    return str(driver.find_element(By.CSS_SELECTOR, selector).get_attribute("textContent"))


def assert_no_script_ran(driver: WebDriver) -> None:
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        pass
    else:
        raise AssertionError(f"a script ran: alert {alert.text!r}")
    assert driver.find_elements(By.CSS_SELECTOR, "script, [onerror], a[href^='javascript' i]") == []
    assert all("favicon" in str(img.get_attribute("src")) for img in driver.find_elements(By.TAG_NAME, "img"))


def ask(driver: WebDriver, site: Site, question: str) -> None:
    driver.get(site.url + "/ask")
    field = driver.find_element(By.ID, "question")
    field.clear()
    field.send_keys(question)
    driver.find_element(By.ID, "ask").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.ID, "answer")))


# ------------------------------------------------------------------------------------------------------ tests


def test_log_in_and_out(driver: WebDriver, site: Site) -> None:
    driver.delete_all_cookies()
    driver.get(site.url + "/questions?tier=answered")
    assert "/login" in driver.current_url and driver.find_elements(By.ID, "token")
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    alert = WebDriverWait(driver, WAIT).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]"))
    )
    assert "That token is not right" in alert.text

    log_in(driver, site, "/questions?tier=answered")
    assert driver.current_url == site.url + "/questions?tier=answered", "back where the login interrupted"
    cookie = driver.get_cookie("citebot_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert driver.execute_script("return document.cookie") == "", "scripts cannot read the session"

    driver.find_element(By.ID, "logout").click()
    WebDriverWait(driver, WAIT).until(lambda d: "/login" in d.current_url)
    driver.get(site.url + "/questions")
    assert "/login" in driver.current_url, "logged out: the pages need a login again"


def test_ask_then_follow_a_citation_to_the_highlighted_quote(driver: WebDriver, site: Site) -> None:
    log_in(driver, site, "/ask")
    ask(driver, site, SEOUL)
    assert "answered" in driver.find_element(By.CSS_SELECTOR, "#answer .badge").text
    quote = text_of(driver, "#c1 blockquote")
    assert "neutral staging ground" in quote
    link = driver.find_element(By.CSS_SELECTOR, "#c1 a.open-citation")
    href = str(link.get_attribute("href"))
    link.click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.ID, "q")))

    assert text_of(driver, "mark#q") == quote, "the highlighted element is exactly the quote"
    doc_id, start, end = re.search(r"/doc/(\w+)\?start=(\d+)&end=(\d+)#q$", href).groups()  # type: ignore[union-attr]
    found = site.engine.document_text(doc_id)
    assert found is not None and found[0][int(start) : int(end)] == quote
    assert text_of(driver, ".doc-text") == found[0], "the whole document is shown, character for character"
    top = driver.execute_script("return document.getElementById('q').getBoundingClientRect().top")
    assert 0 <= top < driver.execute_script("return window.innerHeight"), "the passage is scrolled into view"

    driver.get(site.url + "/questions?kind=web")
    assert SEOUL in driver.find_element(By.CSS_SELECTOR, "table.questions tbody tr").text, "the ask was logged"


@pytest.mark.timeout(TRAINING + 120)
def test_mark_a_sentence_undo_it_and_retrain(driver: WebDriver, site: Site) -> None:
    """The learning loop as an operator clicks through it: mark the sentence that answers a question on its page,
    undo it, mark it again, say another question has no answer, then retrain from the Quality page and watch the
    run finish (the page refreshes itself while it runs), the console answering all along."""
    driver.delete_all_cookies()
    driver.get(site.url + "/login")
    driver.find_element(By.ID, "name").send_keys("Ana <i>Ops</i>")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, WAIT).until(lambda d: "/login" not in d.current_url)

    ask(driver, site, "when are the seoul talks")
    driver.find_element(By.LINK_TEXT, "in the log →").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.ID, "labels")))
    sentences = driver.find_elements(By.CSS_SELECTOR, "ol.sentences li.sentence")
    target = next(item for item in sentences if "May" in text_of_element(item, ".quote"))
    quote = text_of_element(target, ".quote").strip("“”")
    target.find_element(By.CSS_SELECTOR, "button.mark").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "li.label")))
    assert quote in text_of(driver, "ul.labels") and "Ana <i>Ops</i>" in text_of(driver, "ul.labels")
    assert driver.find_elements(By.CSS_SELECTOR, "ul.labels i") == [], "the operator's name is text, not markup"
    assert "✓ answers it" in text_of(driver, "ol.sentences")
    (standing,) = [label for label in site.log.labels() if label.quote == quote]
    assert (standing.labelled_by, standing.verdict) == ("Ana <i>Ops</i>", "answers")

    driver.find_element(By.CSS_SELECTOR, "ul.labels button.undo").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "li.undone")))
    assert "undone by Ana <i>Ops</i>" in text_of(driver, "li.undone")
    assert not [label for label in site.log.labels() if label.quote == quote]
    next(
        item for item in driver.find_elements(By.CSS_SELECTOR, "ol.sentences li.sentence") if quote in item.text
    ).find_element(By.CSS_SELECTOR, "button.mark").click()
    WebDriverWait(driver, WAIT).until(lambda d: [label for label in site.log.labels() if label.quote == quote])

    ask(driver, site, "who paid for the delegation's hotel in seoul?")
    driver.find_element(By.LINK_TEXT, "in the log →").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.ID, "unanswerable")))
    driver.find_element(By.ID, "unanswerable").click()
    WebDriverWait(driver, WAIT).until(
        lambda d: (
            "Nothing in the corpus answers it" in text_of(d, "ul.labels")
            if d.find_elements(By.CSS_SELECTOR, "ul.labels")
            else False
        )
    )

    driver.get(site.url + "/quality")
    assert "the model shipped with citebot" in text_of(driver, "#training")
    driver.find_element(By.ID, "retrain").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "tr.run")))
    assert driver.find_element(By.ID, "retrain").get_attribute("disabled") is not None, "one run at a time"
    ask(driver, site, SEOUL)  # answering goes on while it trains
    assert "neutral staging ground" in text_of(driver, "#c1 blockquote")
    driver.get(site.url + "/quality")
    WebDriverWait(driver, TRAINING).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "tr.run.published, tr.run.kept, tr.run.failed")
    )
    run = text_of(driver, "tr.run")
    assert driver.find_elements(By.CSS_SELECTOR, "tr.run.published, tr.run.kept"), f"the run failed: {run}"
    assert "Ana <i>Ops</i>" in run
    (recorded,) = site.log.training_runs(1)
    assert recorded["started_by"] == "Ana <i>Ops</i>" and recorded["outcome"]["labelled"] >= 2
    if recorded["status"] == "published":  # the console's own engine switches within seconds, without a restart
        version = recorded["outcome"]["version"]

        def switched(d: WebDriver) -> bool:
            d.get(site.url + "/quality")
            return version in text_of(d, "#training")

        WebDriverWait(driver, 30, poll_frequency=2).until(switched)
        site.engine.store.use_answer_model(None)  # the other tests expect the shipped model
    else:
        assert "keeping the model in use" in run


def test_markup_in_documents_and_questions_shows_as_text(driver: WebDriver, site: Site) -> None:
    log_in(driver, site, "/corpus")
    driver.find_element(By.LINK_TEXT, 'Notes on <script>alert("document")</script> markup').click()
    body = text_of(driver, ".doc-text")
    assert '<script>alert("body")</script>' in body and "[click me](javascript:alert('link'))" in body
    assert '<a href="javascript:alert(2)">this one</a>' in body
    assert_no_script_ran(driver)

    driver.get(site.url + "/corpus")
    hostile = driver.find_element(By.XPATH, "//td[contains(., \"javascript:alert('url')\")]")
    assert hostile.find_elements(By.TAG_NAME, "a") == [], "a javascript: URL is shown, never linked"
    assert "Hostile <em>feed</em> item" in driver.page_source.replace("&lt;", "<").replace("&gt;", ">")
    assert_no_script_ran(driver)

    ask(driver, site, XSS_QUESTION)
    assert text_of(driver, ".answer-question") == XSS_QUESTION
    assert_no_script_ran(driver)
    driver.get(site.url + "/questions?kind=web&q=script")
    assert XSS_QUESTION in driver.find_element(By.CSS_SELECTOR, "td.question").text
    assert_no_script_ran(driver)


async def test_a_vote_in_discord_shows_on_the_questions_page(driver: WebDriver, site: Site) -> None:
    from tests.test_discord_e2e import TOKEN as BOT_TOKEN
    from tests.test_discord_e2e import button_ids, running_bot

    question = "When did Bessent meet He Lifeng in Davos?"
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        async with FakeDiscord(token=BOT_TOKEN) as fake, running_bot(site.settings, site.engine, fake) as run:
            _interaction, followup = await run.ask(question)
            up = button_ids(followup.json)[0]
            click = await fake.dispatch_component_click(followup.response["id"], up)
            reply = await fake.wait_for_callback(click, WAIT)
            assert reply.json["data"]["content"] == "Thanks for the feedback"
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway

    def look() -> str:
        log_in(driver, site, "/questions?vote=up&kind=discord")
        return str(driver.find_element(By.CSS_SELECTOR, "table.questions tbody tr").text)

    row = await asyncio.to_thread(look)
    assert question in row and "👍 1" in row, row


PAGES: list[tuple[str, str]] = [
    ("overview", "/"),
    ("questions", "/questions"),
    ("gaps", "/gaps"),
    ("corpus", "/corpus"),
    ("quality", "/quality"),
    ("export", "/export"),
]


def test_every_page_at_laptop_and_phone_size(driver: WebDriver, site: Site) -> None:
    shots: list[Path] = []

    def shoot(name: str, focus: str | None = None) -> None:
        for size_name, size, mobile in (("laptop", browser.LAPTOP, False), ("phone", browser.PHONE, True)):
            path = browser.capture(driver, f"{name}-{size_name}", size, mobile, focus)
            assert path.stat().st_size > 5000, f"{path} looks empty"
            shots.append(path)
            if mobile:
                overflow = _sideways_overflow(driver, size)
                assert not overflow, f"{name} scrolls sideways on a phone: {overflow}"

    driver.delete_all_cookies()
    driver.get(site.url + "/login")
    shoot("login")
    log_in(driver, site)
    for name, path in PAGES:
        driver.get(site.url + path)
        assert driver.find_element(By.TAG_NAME, "h1").text, f"{path} has a heading"
        shoot(name)
    driver.get(f"{site.url}/questions/{site.ids[SEOUL]}")
    shoot("question")
    driver.find_element(By.CSS_SELECTOR, "#c1 a.open-citation").click()
    shoot("document", focus="mark#q")
    ask(driver, site, SEOUL)
    shoot("ask")
    assert len(shots) == 2 * (len(PAGES) + 4)


def _sideways_overflow(driver: WebDriver, size: tuple[int, int]) -> list[str]:
    """Elements wider than a phone screen (what would make the page scroll sideways)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": size[0], "height": size[1], "deviceScaleFactor": 2, "mobile": True},
    )
    try:
        found: Any = driver.execute_script(
            "const w = document.documentElement.clientWidth;"
            "return [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > w + 1 && getComputedStyle(e).position !== 'fixed'"
            " && !e.closest('.table-wrap, .jsonl, .nav'))"
            ".slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));"
        )
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return list(found)
