"""The workbench in a real browser: Debian's Chromium (headless) driven by selenium against the app served by
uvicorn on a free loopback port, over a real prepared work folder (tests/workbench_data.py). Keyboard-only
labelling of every box of the clips, with a reload mid-task that keeps every label; merging two ids the
tracker split; two sessions on one clip where the stale one sees the conflict; then `avaforge build` and
validate pass with exactly the expected rows. Screenshots of the grid and the player go to
$AVAFORGE_SCREENSHOTS (default: the test's tmp folder)."""

from __future__ import annotations

import csv
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from avaforge.runner import build
from avaforge.validation import validate_dataset
from avaforge.workbench.app import Caller, LocalClips, create_app, local_app
from avaforge.workbench.assignments import Assignment, Assignments
from avaforge.workbench.revisions import LocalRevisions
from avaforge.workdir import Workdir
from tests.workbench_data import fresh_workdir

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_S = 60  # generous: the test machines are shared


class Served:
    """The app on 127.0.0.1:<free port> in a thread (uvicorn), stopped by ``stop``."""

    def __init__(self, work: Path, app: FastAPI | None = None) -> None:
        app = app or local_app(work, annotator="test")
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        sock = config.bind_socket()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            assert time.monotonic() < deadline, "the workbench server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def work(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return fresh_workdir(tmp_path_factory, tmp_path)


@pytest.fixture
def served(work: Path) -> Iterator[Served]:
    s = Served(work)
    yield s
    s.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("AVAFORGE_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium(tmp_path: Path, name: str) -> WebDriver:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are not installed (make install brings them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1500,1100", "--disable-gpu"):
        opts.add_argument(arg)
    profile = tmp_path / f"chromium-{name}"
    opts.add_argument(f"--user-data-dir={profile}")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # Chromium's scratch files stay in the test's folder
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER, env=env))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = chromium(tmp_path, "a")
    yield driver
    driver.quit()


def open_page(driver: WebDriver, url: str, clip: str | None = None) -> None:
    driver.get(url + (f"?clip={clip}" if clip else ""))
    wait_ready(driver)


def wait_ready(driver: WebDriver) -> None:
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready")
    )


def keys(driver: WebDriver, *pressed: str) -> None:
    chain = ActionChains(driver)
    for k in pressed:
        chain.send_keys(k)
    chain.perform()


def wait_saved(driver: WebDriver, revision: int | None = None) -> int:
    """Wait until every queued edit is saved; the saved revision."""

    def done(d: WebDriver) -> bool:
        status = d.find_element(By.ID, "status")
        if status.get_attribute("data-state") in ("error", "conflict"):
            raise AssertionError(status.text)
        ok = status.get_attribute("data-state") == "saved"
        return ok and (revision is None or int(status.get_attribute("data-revision")) == revision)

    WebDriverWait(driver, WAIT_S).until(done)
    return int(driver.find_element(By.ID, "status").get_attribute("data-revision"))


def grid(driver: WebDriver) -> dict[tuple[int, int], str]:
    """(person, second) -> the action ids shown in the cell ("" = unlabelled), for every cell with a box
    (read in one script call: the page re-renders the grid after each save)."""
    cells = driver.execute_script(
        "return [...document.querySelectorAll('#grid td:not(.nobox)')].map(td => "
        "[+td.dataset.person, +td.dataset.second, td.querySelector('.labels').dataset.actions])"
    )
    return {(p, s): a for p, s, a in cells}


def selected(driver: WebDriver) -> tuple[int, int]:
    p, s = driver.execute_script(
        "const td = document.querySelector('#grid td.selected');"
        "return [+td.dataset.person, +td.dataset.second]"
    )
    return p, s


def goto(driver: WebDriver, person: int, second: int) -> None:
    """Select a cell with the keys only: Tab to the person's row, arrows to the second."""
    for _ in range(100):
        p, s = selected(driver)
        if (p, s) == (person, second):
            return
        keys(driver, Keys.TAB if p != person else Keys.ARROW_LEFT if s > second else Keys.ARROW_RIGHT)
    raise AssertionError(f"could not reach person {person} at second {second}")


def label_rows(driver: WebDriver, people: list[int], plan: dict[int, str]) -> int:
    """Label every box of ``people`` with the keys only: go to the person's first box, press the person's
    action key, then carry it forward along the track (f, which moves on too). Returns the edits made."""
    edits = 0
    for p in people:
        cells = sorted(s for (q, s) in grid(driver) if q == p)
        goto(driver, p, cells[0])
        keys(driver, plan[p])
        edits += 1
        for _ in cells[1:]:
            keys(driver, "f")
            edits += 1
    return edits


def test_keyboard_only_labelling_survives_a_reload_and_builds_a_valid_dataset(
    served: Served, browser: WebDriver, work: Path, shots: Path, tmp_path: Path
) -> None:
    wd = Workdir(work)
    expected: dict[str, dict[tuple[int, int], str]] = {}
    for clip in wd.clip_ids():
        open_page(browser, served.url, clip)
        start = wait_saved(browser)
        boxes = grid(browser)
        people = sorted({p for p, _ in boxes})
        plan = {p: "12"[i % 2] for i, p in enumerate(people)}  # stand / walk, alternating by person
        # Tab: the next person's row, at that person's first box (where its labelling starts)
        now, _ = selected(browser)
        keys(browser, Keys.TAB)
        nxt = people[(people.index(now) + 1) % len(people)]
        assert selected(browser) == (nxt, min(s for q, s in boxes if q == nxt))
        half = len(people) // 2
        made = label_rows(browser, people[:half], plan)
        wait_saved(browser, start + made)
        shown = grid(browser)
        browser.refresh()  # mid-task: everything saved so far comes back
        wait_ready(browser)
        assert grid(browser) == shown
        made += label_rows(browser, people[half:], plan)
        # one more key on the first box: wave (3) as well, then undo and redo it
        goto(browser, *min(boxes))
        keys(browser, "3")
        wait_saved(browser, start + made + 1)
        keys(browser, "z")
        wait_saved(browser, start + made + 2)
        keys(browser, "y")
        wait_saved(browser, start + made + 3)
        want = {(p, s): ("1" if plan[p] == "1" else "2") for p, s in boxes}
        want[min(boxes)] += ",3"
        assert grid(browser) == want
        expected[clip] = want
        if clip == wd.clip_ids()[0]:
            browser.find_element(By.ID, "grid-wrap").screenshot(str(shots / "workbench-grid.png"))
            browser.find_element(By.ID, "player").screenshot(str(shots / "workbench-player.png"))
            browser.save_screenshot(str(shots / "workbench-page.png"))
            keys(browser, "?")
            assert browser.find_element(By.ID, "help").is_displayed()
            keys(browser, Keys.ESCAPE)
    # the labels feed `avaforge build`; the dataset validates with exactly one row per (box, action)
    result = build(work, tmp_path / "dataset")
    assert validate_dataset(result.out).ok
    rows = []
    for split in ("train", "val"):
        with open(result.out / "annotations" / f"{split}.csv") as fh:
            rows += [r for r in csv.reader(fh)]
    want_rows = sorted(
        (clip, s, int(a))
        for clip, cells in expected.items()
        for (_, s), ids in cells.items()
        for a in ids.split(",")
    )
    assert sorted((r[0], int(r[1]), int(r[6])) for r in rows) == want_rows


def tracker_split(doc_boxes: list[dict]) -> tuple[int, int] | None:
    """Two people the tracker split: disjoint seconds, the first's last box overlaps the second's first."""
    by_person: dict[int, dict[int, list[float]]] = {}
    for b in doc_boxes:
        by_person.setdefault(b["person"], {})[b["second"]] = b["box"]
    for a, ta in by_person.items():
        for b, tb in by_person.items():
            if a != b and max(ta) < min(tb) and _iou(ta[max(ta)], tb[min(tb)]) >= 0.3:
                return a, b
    return None


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def test_merging_two_ids_the_tracker_split(
    served: Served, browser: WebDriver, work: Path, shots: Path
) -> None:
    import httpx

    clip = Workdir(work).clip_ids()[0]
    doc = httpx.get(f"{served.url}api/clips/{clip}", timeout=30).json()["document"]
    open_page(browser, served.url, clip)
    pair = tracker_split(doc["boxes"])
    if pair is None:  # the tracker kept everyone: make the split with the split tool (s), then merge back
        person = min(grid(browser))[0]
        goto(browser, person, max(s for p, s in grid(browser) if p == person))
        keys(browser, "s")
        wait_saved(browser, 1)
        doc = httpx.get(f"{served.url}api/clips/{clip}", timeout=30).json()["document"]
        pair = tracker_split(doc["boxes"])
        assert pair is not None
    keep, other = pair
    seconds = {s for (p, s) in grid(browser) if p in pair}
    base = wait_saved(browser)
    goto(browser, keep, min(s for p, s in grid(browser) if p == keep))
    keys(browser, "m")
    goto(browser, other, min(s for p, s in grid(browser) if p == other))
    keys(browser, "m")
    wait_saved(browser, base + 1)
    after = grid(browser)
    assert {s for (p, s) in after if p == keep} == seconds and not any(p == other for p, _ in after)
    browser.find_element(By.ID, "grid-wrap").screenshot(str(shots / "workbench-merged-grid.png"))


def test_two_sessions_on_one_clip_the_stale_one_sees_the_conflict(
    served: Served, browser: WebDriver, tmp_path: Path, work: Path
) -> None:
    clip = Workdir(work).clip_ids()[0]
    other = chromium(tmp_path, "b")
    try:
        open_page(browser, served.url, clip)
        open_page(other, served.url, clip)
        keys(browser, "1")
        wait_saved(browser, 1)
        keys(other, "2")  # made on revision 0, which is no longer the newest
        WebDriverWait(other, WAIT_S).until(
            lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "conflict"
        )
        assert "conflict" in other.find_element(By.ID, "status").text
        reload = other.find_element(By.ID, "reload")
        assert reload.is_displayed()
        reload.click()
        WebDriverWait(other, WAIT_S).until(  # the reload ends the conflict state
            lambda d: d.find_element(By.ID, "status").get_attribute("data-state") != "conflict"
        )
        wait_saved(other, 1)
        assert grid(other)[selected(other)] == "1"  # the other session's label, not the stale edit
        keys(other, "3")
        wait_saved(other, 2)
    finally:
        other.quit()
        shutil.rmtree(tmp_path / "chromium-b", ignore_errors=True)


def test_the_mouse_selects_draws_and_moves_boxes(served: Served, browser: WebDriver, work: Path) -> None:
    import httpx

    clip = Workdir(work).clip_ids()[0]
    api = f"{served.url}api/clips/{clip}"
    open_page(browser, served.url, clip)
    doc = httpx.get(api, timeout=30).json()["document"]
    # click a cell: it is selected
    person, second = max((b["person"], b["second"]) for b in doc["boxes"])
    browser.find_element(By.CSS_SELECTOR, f'#grid td[data-person="{person}"][data-second="{second}"]').click()
    assert selected(browser) == (person, second)
    # n, then a drag on the player draws a new person at the selected second
    canvas = browser.find_element(By.ID, "player")
    scale = canvas.size["width"] / doc["frame_size"][0]
    origin_x, origin_y = -canvas.size["width"] / 2, -canvas.size["height"] / 2  # offsets are from the centre

    def drag(x1: float, y1: float, x2: float, y2: float) -> None:
        ActionChains(browser).move_to_element_with_offset(
            canvas, int(origin_x + x1 * scale), int(origin_y + y1 * scale)
        ).click_and_hold().move_by_offset(int((x2 - x1) * scale), int((y2 - y1) * scale)).release().perform()

    keys(browser, "n")
    drag(300, 20, 360, 140)
    wait_saved(browser, 1)
    new = doc["next_person"]
    assert selected(browser) == (new, second)
    drawn = httpx.get(api, timeout=30).json()["document"]
    (box,) = [b for b in drawn["boxes"] if b["person"] == new]
    assert box["edited"] and box["second"] == second
    assert box["box"] == pytest.approx([300, 20, 360, 140], abs=2 / scale + 0.5)  # a pixel of the canvas
    # drag the selected box 40 px left: saved as a move
    drag(330, 80, 290, 80)
    wait_saved(browser, 2)
    moved = httpx.get(api, timeout=30).json()["document"]
    (after,) = [b for b in moved["boxes"] if b["person"] == new]
    assert after["box"][0] == pytest.approx(box["box"][0] - 40, abs=2 / scale + 0.5)


def test_with_an_authenticate_hook_the_page_sends_the_token(work: Path, browser: WebDriver) -> None:
    """The token from the URL goes on every request; the page says the caller's role on the clip from the
    assignments (kim annotates the first clip, lee reviews it) and lists the clips with theirs."""
    clips = LocalClips(work)
    first, second = clips.clip_ids()
    assignments = Assignments(LocalRevisions(work / "annotate"))
    assignments.set(first, Assignment("kim", "lee"), "owner")
    app = create_app(
        clips,
        LocalRevisions(work / "annotate" / "revisions"),
        authenticate={"tok-7": "kim", "tok-8": Caller("lee", False)}.get,
        assignments=assignments,
    )
    served = Served(work, app)
    try:
        browser.get(served.url + "?clip=any")  # no token: nothing loads, the page says so
        WebDriverWait(browser, WAIT_S).until(
            lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "error"
        )
        assert "401" in browser.find_element(By.ID, "status").text
        browser.get(served.url + "#token=tok-7")
        wait_ready(browser)
        assert "#token" not in browser.current_url  # kept out of the address bar
        assert "kim" in browser.find_element(By.ID, "mode").text
        keys(browser, "1")
        wait_saved(browser, 1)
        loaded = (
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(loaded))  # crops, with the token
        WebDriverWait(browser, WAIT_S).until(
            lambda d: d.find_element(By.ID, "player").get_attribute("data-frame")
        )
        role = (By.CSS_SELECTOR, "#mode[data-role]")
        WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(*role))
        assert browser.find_element(By.ID, "mode").text == "annotator · kim"
        table = (
            "return [...document.querySelectorAll('#assignments tr[data-clip]')]"
            ".map(tr => [...tr.cells].map(td => td.textContent))"
        )
        assert browser.execute_script(table) == [
            [first, "kim", "lee", "unstarted", "annotator"],  # as the page loaded
            [second, "(owner)", "-", "unstarted", "annotator"],  # kim's token is a bare name: a manager
        ]
        browser.find_element(By.CSS_SELECTOR, "#assignments-panel summary").click()  # opening it refreshes
        WebDriverWait(browser, WAIT_S).until(
            lambda d: d.execute_script(table)[0][3] == "in progress"  # saved; lint finds unlabelled boxes
        )
        # lee, the reviewer: the page says so and lee's key press is saved as the clip's review pass
        browser.get(served.url + f"?clip={first}#token=tok-8")
        wait_ready(browser)
        WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(*role))
        assert browser.find_element(By.ID, "mode").text == "review pass · lee"
        keys(browser, "1")
        wait_saved(browser, 1)
        assert Workdir(work).review_labels(first).is_file()
        assert [
            h.author for h in LocalRevisions(work / "annotate" / "revisions").history(f"{first}.review")
        ] == ["lee"]
    finally:
        served.stop()
