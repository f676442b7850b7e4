"""The console in a real browser: Debian's chromium, driven by selenium through Debian's
chromedriver (never a downloaded browser or driver), against the console served on a
free loopback port over the ``console_fleet`` engine and history.

The flows of an agent and an on-call engineer: sign in, search a SIM by either form of
its ICCID and read its diagnosis, open the incident from the fleet page and page through
its SIMs. The pages are saved as screenshots to ``docs/img/console-*.png`` (shown in
docs/console.md).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from console_fleet import KPN, SIMS, TOKEN, WRONG_APN, build
from console_fleet import NOW as FLEET_NOW
from mosquitto import free_port

from simwatch.core.iccid import luhn_check_digit
from simwatch.http.app import make_app
from simwatch.http.console import Sessions
from simwatch.shell.settings import HttpSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from selenium.webdriver.remote.webdriver import WebDriver

    from simwatch.core.engine import Engine
    from simwatch.shell.history import HistoryStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "img"

pytestmark = [
    pytest.mark.real_server,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="Debian's chromium and chromium-driver are not installed (scripts/test installs them)",  # noqa: E501
    ),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    from selenium import webdriver  # noqa: PLC0415 - only when chromium is there
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    os.environ["SE_OFFLINE"] = "true"  # selenium never downloads a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the suite may run as root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, HistoryStore]]:
    engine, store = build(tmp_path_factory.mktemp("console") / "history.sqlite")
    yield engine, store
    store.close()


@pytest.fixture
async def console(fleet: tuple[Engine, HistoryStore]) -> AsyncIterator[str]:
    engine, store = fleet
    app = make_app(
        engine,
        now=lambda: FLEET_NOW,
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        console=Sessions(3600.0, 10, lambda: FLEET_NOW),
        history=store,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"console-{name}.png"))


def sign_in(driver: WebDriver, base: str, *, screenshot: bool = False) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    driver.delete_all_cookies()
    driver.get(f"{base}/ui/")
    assert "/ui/signin" in driver.current_url  # nothing before signing in
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    if screenshot:
        shot(driver, "signin")
    driver.find_element(By.ID, "signin").click()
    assert driver.current_url == f"{base}/ui/"


def agent_flow(driver: WebDriver, base: str) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    sign_in(driver, base, screenshot=True)
    for form in (WRONG_APN, WRONG_APN + luhn_check_digit(WRONG_APN)):
        box = driver.find_element(By.ID, "q")
        box.clear()
        box.send_keys(form)
        box.submit()
        assert driver.current_url == f"{base}/ui/sims/{WRONG_APN}", form
        diagnosis = driver.find_element(By.ID, "diagnosis").text
        assert "The device uses APN 'internet'; this SIM allows 'meters.acme'" in diagnosis
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.strip line.tick.data")) == 96
    shot(driver, "sim")
    driver.set_window_size(390, 844)  # a phone
    shot(driver, "sim-phone")
    driver.set_window_size(1280, 1000)


def on_call_flow(driver: WebDriver, base: str) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    sign_in(driver, base)
    shot(driver, "fleet")
    driver.find_element(By.CSS_SELECTOR, "a.incident-link").click()
    assert driver.current_url == f"{base}/ui/incidents/inc-0001"
    assert "80 of 80 SIMs" in driver.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert driver.find_elements(By.CSS_SELECTOR, "svg.chart polyline.affected")
    first = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "a.sim-link")]
    shot(driver, "incident")
    driver.find_element(By.ID, "next-page").click()
    rest = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "a.sim-link")]
    assert len(first) == 50
    assert sorted(first + rest) == sorted(KPN)
    assert not driver.find_elements(By.ID, "next-page")
    driver.find_elements(By.CSS_SELECTOR, "a.sim-link")[0].click()
    assert "Part of incident inc-0001" in driver.find_element(By.ID, "sim-incident").text


async def test_an_agent_finds_a_sim_by_either_iccid_form_and_reads_its_diagnosis(
    browser: WebDriver, console: str
) -> None:
    await asyncio.to_thread(agent_flow, browser, console)


async def test_on_call_opens_the_incident_from_the_fleet_and_pages_its_sims(
    browser: WebDriver, console: str
) -> None:
    await asyncio.to_thread(on_call_flow, browser, console)
    assert SIMS[0] in KPN
