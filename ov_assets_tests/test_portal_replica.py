"""The replica portal behaves like the real one (CONTRACT §9 "How the real portal behaves"), in
real Chromium and over HTTP: the behaviours the scraper must survive are always there."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ov_assets.devkit.replica import ENCODED_FLAG, Faults, ReplicaPortal
from ov_assets.devkit.replica import PASSWORD_INPUT as PASSWORD_NAME
from ov_assets.devkit.replica import USER_INPUT as USER_NAME
from ov_assets.portal.pages import LIST_PATH, PASSWORD_INPUT, RANGE_LABEL, RESULT_ROWS, USER_INPUT
from ov_assets.portal.scraper import DEBIAN_CHROMIUM
from ov_assets_tests.support import configured_browser

USER = "analista.ov"
PASSWORD = "Pw-réplica-9f3e"
DAY = dt.date(2025, 10, 8)
NEXT_DAY = DAY + dt.timedelta(days=1)
DESDE = "md-datepicker[ng-model='filtros.fechaInicial']"
HASTA = "md-datepicker[ng-model='filtros.fechaFinal']"
SEARCH = "button[ng-click='Search()'][aria-label='Buscar']"
NEXT = "button[ng-click*='next()']"


@pytest.fixture(scope="module")
def portal() -> Iterator[ReplicaPortal]:
    with ReplicaPortal(per_day={DAY: 37, NEXT_DAY: 4, "default": 0}, seed=3, username=USER, password=PASSWORD) as p:
        yield p


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=configured_browser() or DEBIAN_CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, portal: ReplicaPortal) -> Iterator[Page]:
    portal.set_faults(Faults())
    context = browser.new_context(timezone_id="America/Bogota")
    yield context.new_page()
    context.close()


def _post(url: str, form: dict[str, str]) -> tuple[int, str, str]:
    """POST without following redirects: (status, Location, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object) -> None:
            return None

    data = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.build_opener(NoRedirect).open(url, data) as r:
            return r.status, r.headers.get("Location", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", ""), exc.read().decode()


def _login(page: Page, portal: ReplicaPortal, empresa: str, path: str = "/login") -> None:
    page.goto(portal.url(empresa) + path)
    page.locator(USER_INPUT).press_sequentially(USER)
    page.locator(PASSWORD_INPUT).press_sequentially(PASSWORD)
    control = "#dnn_ctr_Login_Login_DNN_btnIngresar" if empresa == "afinia" else "a[id*='cmdLogin']"
    with page.expect_navigation():
        page.locator(control).click()
    page.locator(SEARCH).wait_for(state="attached")
    if empresa == "afinia":
        page.locator("#myModal a.closePopUp").click()


def _filter(page: Page, day: dt.date) -> None:
    """Type ``day`` into both date filters and wait until the search request carries it."""
    page.get_by_text("Filtrar", exact=True).click()
    page.locator(f"{DESDE} input").fill(day.isoformat())
    page.locator(f"{HASTA} input").fill(day.isoformat())
    for _ in range(40):
        with page.expect_response(lambda r: "/api/pqr?" in r.url) as info:
            page.locator(SEARCH).click()
        sent = urllib.parse.parse_qs(urllib.parse.urlsplit(info.value.url).query)
        if sent.get("desde") == sent.get("hasta") == [day.isoformat()]:
            break
        page.wait_for_timeout(100)
    page.locator("md-progress-linear").wait_for(state="hidden")


def _radicados(page: Page) -> list[str]:
    return page.locator(f"{RESULT_ROWS} td.md-cell:first-child").all_text_contents()


def test_request_log_records_api_requests_in_order() -> None:
    with ReplicaPortal(per_day=3) as portal:
        before = time.time()
        for empresa in ("afinia", "aire"):
            try:
                urllib.request.urlopen(f"{portal.url(empresa)}/api/pqr?desde=2025-10-08&hasta=2025-10-08")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401  # no session
        urllib.request.urlopen(f"{portal.url('afinia')}/login").read()  # a page, not an API request
        log = portal.request_log()
        assert [(r.empresa, r.method, r.path.split("?")[0]) for r in log] == [
            ("afinia", "GET", "/afinia/api/pqr"),
            ("aire", "GET", "/aire/api/pqr"),
        ]
        assert before <= log[0].at <= log[1].at <= time.time()
        served = json.loads(urllib.request.urlopen(f"{portal.base_url}/__admin/requests").read())
        assert [tuple(r.values()) for r in served["requests"]] == [tuple(r) for r in log]


def test_afinia_login_is_a_script_driven_button(page: Page, portal: ReplicaPortal) -> None:
    page.goto(portal.url("afinia") + "/login")
    assert page.locator("form button").get_attribute("type") == "button"
    assert page.locator("form [type='submit']").count() == 0
    # A plain submit of the form (no script) is refused: HTTP 200, the login page and a message.
    page.locator(USER_INPUT).press_sequentially(USER)
    page.locator(PASSWORD_INPUT).press_sequentially(PASSWORD)
    with page.expect_navigation() as nav:
        page.evaluate("document.getElementById('Form').submit()")
    assert nav.value.status == 200 and page.locator(PASSWORD_INPUT).count() == 1
    assert "incorrectos" in page.locator(".dnnFormValidationSummary").text_content()
    # The button's handler encodes the password and sets the flag; the postback answers 302.
    page.locator(USER_INPUT).press_sequentially(USER)
    page.locator(PASSWORD_INPUT).press_sequentially(PASSWORD)
    with page.expect_request(lambda r: r.method == "POST") as posted:
        page.locator("form button").click()
    form = urllib.parse.parse_qs(posted.value.post_data)
    assert form[PASSWORD_NAME] != [PASSWORD]
    assert base64.b64decode(form[PASSWORD_NAME][0]).decode() == PASSWORD and form[ENCODED_FLAG] == ["1"]
    assert posted.value.response().status == 302
    page.wait_for_url(f"**/{urllib.parse.quote(LIST_PATH)}#/List")
    page.locator("#myModal a.closePopUp").wait_for()  # Afinia's promotional modal


def test_aire_login_link_returnurl_and_refusal(page: Page, portal: ReplicaPortal) -> None:
    page.goto(portal.url("aire") + "/login")
    link = page.locator("a[id*='cmdLogin']")
    assert link.get_attribute("href").startswith("javascript:__doPostBack(")
    back = f"/aire/{urllib.parse.quote(LIST_PATH)}"
    good = {"__EVENTTARGET": "dnn$ctr$Login$Login_DNN$cmdLogin", USER_NAME: USER, PASSWORD_NAME: PASSWORD}
    assert _post(f"{portal.url('aire')}/login", good)[:2] == (302, f"{back}#/List")
    returnurl = f"{portal.url('aire')}/login?returnurl={urllib.parse.quote(back, safe='')}"
    assert _post(returnurl, good)[:2] == (302, back)
    status, location, body = _post(returnurl, {**good, PASSWORD_NAME: "otra"})
    assert (status, location) == (200, "") and "incorrectos" in body and PASSWORD_NAME in body
    # A post that is not the link's postback (no event target) is refused too.
    assert _post(f"{portal.url('aire')}/login", {**good, "__EVENTTARGET": ""})[0] == 200
    # Afinia refuses a post without the encoding and its flag, even with the right password.
    afinia = {**good, "__EVENTTARGET": "dnn$ctr$Login$Login_DNN$btnIngresar"}
    assert _post(f"{portal.url('afinia')}/login", afinia)[0] == 200
    encoded = {**afinia, PASSWORD_NAME: base64.b64encode(PASSWORD.encode()).decode(), ENCODED_FLAG: "1"}
    assert _post(f"{portal.url('afinia')}/login", encoded)[0] == 302


def test_expired_session_xhr_401_then_login_returns_to_the_path(page: Page, portal: ReplicaPortal) -> None:
    _login(page, portal, "aire")
    page.get_by_text("Filtrar", exact=True).click()
    portal.set_faults(Faults(session_ttl_s=0.001))
    with page.expect_response(lambda r: "/api/pqr" in r.url) as answer:
        page.locator(SEARCH).click()
    assert answer.value.status == 401
    page.wait_for_url("**/aire/login?returnurl=*")
    back = urllib.parse.unquote(urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["returnurl"][0])
    assert back == f"/aire/{LIST_PATH}"
    portal.set_faults(Faults())
    page.locator(USER_INPUT).press_sequentially(USER)
    page.locator(PASSWORD_INPUT).press_sequentially(PASSWORD)
    with page.expect_navigation():
        page.locator("a[id*='cmdLogin']").click()
    assert urllib.parse.unquote(urllib.parse.urlsplit(page.url).path) == back
    page.locator(SEARCH).wait_for(state="attached")  # the list again, at its start


def test_datepicker_debounce_and_calendar_pane(page: Page, portal: ReplicaPortal) -> None:
    _login(page, portal, "aire")
    page.get_by_text("Filtrar", exact=True).click()
    page.locator(f"{DESDE} input").fill(DAY.isoformat())
    page.locator(f"{HASTA} input").fill(DAY.isoformat())
    # Searched at once: the model still holds the previous (empty) dates: every day is listed.
    with page.expect_response(lambda r: "/api/pqr?" in r.url) as early:
        page.locator(SEARCH).click()
    assert "desde=&hasta=&" in early.value.url
    page.wait_for_function("sel => / de 41$/.test(document.querySelector(sel).textContent)", arg=RANGE_LABEL)
    # After 500 ms without input the typed dates are the model.
    page.wait_for_timeout(650)
    with page.expect_response(lambda r: "/api/pqr?" in r.url) as late:
        page.locator(SEARCH).click()
    assert f"desde={DAY}&hasta={DAY}&" in late.value.url
    # A day picked in the calendar pane applies at once: the very next search carries it.
    page.locator(f"{HASTA} button.md-datepicker-button").click()
    page.locator(f".md-datepicker-calendar-pane td.md-calendar-date#md-{NEXT_DAY}").click()
    with page.expect_response(lambda r: "/api/pqr?" in r.url) as picked:
        page.locator(SEARCH).click()
    assert f"desde={DAY}&hasta={NEXT_DAY}&" in picked.value.url
    assert page.locator(f"{HASTA} input").input_value() == NEXT_DAY.isoformat()


def test_label_moves_at_once_rows_with_the_answer_and_failed_xhr_keeps_them(page: Page, portal: ReplicaPortal) -> None:
    _login(page, portal, "aire")
    _filter(page, DAY)
    expect(page.locator(RANGE_LABEL)).to_have_text("1 - 10 de 37")
    first_page = _radicados(page)
    assert len(first_page) == 10
    portal.set_faults(Faults(delay_s=0.4))
    with page.expect_response(lambda r: "/api/pqr?" in r.url):
        page.locator(NEXT).click()
        # At once: the label says 11 - 20 while the rows are still page 1's, progress showing.
        assert page.locator(RANGE_LABEL).text_content() == "11 - 20 de 37"
        assert _radicados(page) == first_page
        assert page.locator("md-progress-linear").is_visible()
    page.wait_for_function(
        "([sel, old]) => document.querySelector(sel).textContent.trim() !== old",
        arg=[f"{RESULT_ROWS} td.md-cell", first_page[0]],
    )
    second_page = _radicados(page)
    assert len(second_page) == 10 and not set(second_page) & set(first_page)
    # A failed XHR: a toast, the label moved on, the old rows stay.
    portal.set_faults(Faults(fail_every=1))
    with page.expect_response(lambda r: "/api/pqr?" in r.url) as failed:
        page.locator(NEXT).click()
    assert failed.value.status == 500
    page.locator("md-toast").filter(has_text="Ocurrió un error").wait_for()
    assert page.locator(RANGE_LABEL).text_content() == "21 - 30 de 37"
    assert _radicados(page) == second_page


def test_detail_route_rewrite_and_values_after_their_xhr(page: Page, portal: ReplicaPortal) -> None:
    _login(page, portal, "aire")
    _filter(page, DAY)
    expect(page.locator(RANGE_LABEL)).to_have_text("1 - 10 de 37")
    links = page.locator("a.md-primary[tooltip='Ver PQR']")
    href = links.first.get_attribute("href")
    assert href.startswith("#Detail/")
    portal.set_faults(Faults(delay_s=0.4))
    value = "td.text-td-label:text-is('N° Radicado PQR') + td.ng-binding"
    with page.expect_response(lambda r: "/api/pqr/" in r.url):
        links.first.click()
        page.wait_for_function("() => location.hash.startsWith('#/Detail/')")
        assert page.evaluate("location.hash") == "#/" + href[1:]
        # The view is rebuilt at once, the values only when the detail's XHR answers.
        assert page.locator("td.text-td-label").count() > 10 and page.locator(value).text_content() == ""
    expect(page.locator(value)).to_have_text(_radicados_of(portal)[0])
    # Failed detail XHR: a toast.
    portal.set_faults(Faults(fail_every=1))
    other = _detail_ids(portal)[1]
    with page.expect_response(lambda r: f"/api/pqr/{other}" in r.url) as failed:
        page.evaluate("id => { location.hash = '#Detail/' + id; }", other)
    assert failed.value.status == 500
    page.locator("md-toast").filter(has_text="Ocurrió un error").wait_for()


def _radicados_of(portal: ReplicaPortal) -> list[str]:
    return [r["numero_radicado"] for r in portal.records("aire", DAY)]


def _detail_ids(portal: ReplicaPortal) -> list[int]:
    return [p.detail_id for p in portal.state.day("aire", DAY)]
