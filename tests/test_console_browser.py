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
import contextlib
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
from simwatch.shell.maintenance import MaintenanceStore
from simwatch.shell.settings import HttpSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

    from simwatch.core.engine import Engine
    from simwatch.core.maintenance import Window
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


@contextlib.asynccontextmanager
async def serving(
    engine: Engine, store: HistoryStore, windows: MaintenanceStore | None = None
) -> AsyncIterator[str]:
    app = make_app(
        engine,
        now=lambda: FLEET_NOW,
        settings=HttpSettings(),
        tokens=frozenset({TOKEN}),
        console=Sessions(3600.0, 10, lambda: FLEET_NOW),
        history=store,
        maintenance=windows,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def console(fleet: tuple[Engine, HistoryStore]) -> AsyncIterator[str]:
    async with serving(*fleet) as base:
        yield base


def go(driver: WebDriver, element: WebElement, url: str | None = None) -> None:
    """Click ``element`` (a link or a submit button) and wait until a new page is loaded
    (the old one gone; at ``url`` when given): click() returns before the navigation
    completes. Fails after 10 s naming where the browser is."""
    from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    # The old page is marked; a new page is a new window object, without the mark. (An
    # element of the old page as the mark is not enough: while it is being replaced,
    # Chromium's driver may answer "Node with given id does not belong to the document"
    # instead of "stale element", which the staleness wait does not expect.)
    driver.execute_script("window.__simwatchOldPage = true")
    element.click()
    # while the navigation is under way a script may find no page to run in: try again
    wait = WebDriverWait(driver, 10, poll_frequency=0.05, ignored_exceptions=(WebDriverException,))
    try:
        wait.until(lambda d: d.execute_script("return window.__simwatchOldPage !== true"))
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        if url is not None:
            wait.until(lambda d: d.current_url == url)
    except TimeoutException:
        raise AssertionError(f"expected {url}, the browser is at {driver.current_url}") from None


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
    go(driver, driver.find_element(By.ID, "signin"), f"{base}/ui/")


def agent_flow(driver: WebDriver, base: str) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    sign_in(driver, base, screenshot=True)
    for form in (WRONG_APN, WRONG_APN + luhn_check_digit(WRONG_APN)):
        box = driver.find_element(By.ID, "q")
        box.clear()
        box.send_keys(form)
        go(
            driver,
            driver.find_element(By.CSS_SELECTOR, "form.search button"),
            f"{base}/ui/sims/{WRONG_APN}",
        )
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
    go(
        driver,
        driver.find_element(By.CSS_SELECTOR, "a.incident-link"),
        f"{base}/ui/incidents/inc-0001",
    )
    assert "80 of 80 SIMs" in driver.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert driver.find_elements(By.CSS_SELECTOR, "svg.chart polyline.affected")
    first = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "a.sim-link")]
    shot(driver, "incident")
    following = driver.find_element(By.ID, "next-page")
    go(driver, following, following.get_attribute("href"))
    rest = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "a.sim-link")]
    assert len(first) == 50
    assert sorted(first + rest) == sorted(KPN)
    assert not driver.find_elements(By.ID, "next-page")
    link = driver.find_elements(By.CSS_SELECTOR, "a.sim-link")[0]
    go(driver, link, link.get_attribute("href"))
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


def create_window(driver: WebDriver, base: str) -> None:
    """On-call plans KPN's weekly works from the console: every Thursday 00:00-04:00
    Amsterdam time, partner 20408 (the fleet's now is Thursday 03:00 there)."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import Select  # noqa: PLC0415

    sign_in(driver, base)
    go(driver, driver.find_element(By.ID, "nav-maintenance"), f"{base}/ui/maintenance")
    driver.find_element(By.ID, "mw-name").send_keys("KPN Thursday works")
    start = driver.find_element(By.ID, "mw-start")  # a date-time picker: set its value
    driver.execute_script("arguments[0].value = arguments[1]", start, "2026-11-12T00:00")
    zone = driver.find_element(By.ID, "mw-tz")
    zone.clear()
    zone.send_keys("Europe/Amsterdam")
    hours = driver.find_element(By.ID, "mw-duration")
    hours.clear()
    hours.send_keys("4")
    Select(driver.find_element(By.ID, "mw-repeat")).select_by_value("weekly")
    Select(driver.find_element(By.ID, "mw-weekday")).select_by_value("TH")
    Select(driver.find_element(By.ID, "mw-dim")).select_by_value("partner")
    driver.find_element(By.ID, "mw-values").send_keys("20408")
    go(driver, driver.find_element(By.ID, "mw-save"), f"{base}/ui/maintenance")
    row = driver.find_element(By.CSS_SELECTOR, "tr.window").text
    assert "KPN Thursday works" in row
    assert "FREQ=WEEKLY;BYDAY=TH" in row
    assert "ACTIVE" in row
    shot(driver, "maintenance")


def see_marked_incident(driver: WebDriver, base: str) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    driver.get(f"{base}/ui/")
    line = driver.find_element(By.CSS_SELECTOR, "table.incidents tbody tr").text
    assert "maintenance" in line
    go(
        driver,
        driver.find_element(By.CSS_SELECTOR, "a.incident-link"),
        f"{base}/ui/incidents/inc-0001",
    )
    note = driver.find_element(By.ID, "maintenance").text
    assert "KPN Thursday works" in note
    assert "not paged" in note
    assert driver.find_elements(By.CSS_SELECTOR, "svg.chart rect.maint-span")  # on the chart
    shot(driver, "incident-maintenance")


async def test_on_call_creates_a_recurring_window_and_sees_the_incident_marked(
    browser: WebDriver, tmp_path: Path
) -> None:
    engine, store = build(tmp_path / "history.sqlite")  # its own fleet: it evaluates again

    def changed(windows: tuple[Window, ...]) -> None:
        engine.maintenance = windows  # as simwatch run wires it

    windows = MaintenanceStore([], tmp_path / "maintenance.json", on_change=changed)
    try:
        async with serving(engine, store, windows) as base:
            await asyncio.to_thread(create_window, browser, base)
            engine.evaluate(FLEET_NOW + 60)  # the daemon's next cycle
            await asyncio.to_thread(see_marked_incident, browser, base)
    finally:
        store.close()
