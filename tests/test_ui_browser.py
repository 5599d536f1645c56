"""The floor map as a person sees it: the real service, a real headless Chromium.

``gpusched serve`` runs as a subprocess on 127.0.0.1 (a free port, a temporary state
directory); selenium drives Debian's chromium through chromedriver.  Each test checks
that the page loads, that every hall and every rack is drawn, that a placement made
through the API shows on the page without a reload, that clicking the job highlights
its racks, and writes a screenshot under pytest's tmp dir (the path is printed: run
with ``-s`` to see it).  Everything is bounded: the server start, the page load and
every wait have timeouts, and the driver and the server are always stopped.
"""

from __future__ import annotations

import pytest

import gpusched
from tests.support.real import need_modules, need_programs
from tests.support.serve_process import start_server, stop

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

WAIT_S = 30
TOKEN = "floor-map-token"


def chromium(programs: dict[str, str]):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = programs["chromium"]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(programs["chromedriver"]), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    return driver


@pytest.mark.parametrize("preset, job_gpus", [("tiny", 16), ("colossus-100k", 4096)])
def test_floor_map_draws_the_site_and_follows_a_placement(tmp_path, preset, job_gpus):
    programs = need_programs("chromium", "chromedriver", apt="chromium chromium-driver")
    need_modules("selenium", pip="'gpusched[test]'")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cluster = gpusched.Cluster.preset(preset)
    proc, url = start_server(preset, tmp_path / "state", "--token", TOKEN)
    driver = None
    try:
        driver = chromium(programs)
        driver.get(url + "/ui")
        wait = WebDriverWait(driver, WAIT_S)
        # the first live view has arrived once the page records its journal position
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-seq"))
        halls = driver.find_elements(By.CSS_SELECTOR, "svg#floor g.hall")
        assert len(halls) == cluster.num_halls
        titles = [h.find_element(By.CSS_SELECTOR, "text.hall-title").text for h in halls]
        assert titles == list(cluster.hall_names)
        assert driver.execute_script(
            "return document.querySelectorAll('svg#floor rect.rack').length") \
            == cluster.num_racks
        assert driver.execute_script(
            "return document.querySelectorAll('rect.rack[data-busy=\"0\"]').length") \
            == cluster.num_racks
        assert "all up" in driver.find_element(By.ID, "summary").text
        # a mark the page would lose on a reload
        driver.execute_script("window.__not_reloaded = true;")

        job = {"id": "llm-floor", "gpus": job_gpus, "min_cap_w": 300}
        placed = httpx.post(url + "/v2/place", json={"job": job}, timeout=WAIT_S,
                            headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert placed["placed"], placed
        racks = httpx.get(url + "/v1/floor", timeout=WAIT_S).json()["jobs"][0][3]

        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "li[data-job='llm-floor']"))
        assert driver.execute_script("return window.__not_reloaded === true;")
        busy = driver.execute_script(
            "return Array.from(document.querySelectorAll('rect.rack'))"
            ".filter(r => Number(r.getAttribute('data-busy')) > 0)"
            ".map(r => Number(r.getAttribute('data-rack')));")
        assert sorted(busy) == sorted(racks)
        assert f"{job_gpus:,} / {cluster.num_gpus:,} GPUs busy" in \
            driver.find_element(By.ID, "summary").text

        # clicking the job holds its racks highlighted
        driver.find_element(By.CSS_SELECTOR, "li[data-job='llm-floor']").click()
        lit = driver.execute_script(
            "return Array.from(document.querySelectorAll('rect.rack.hl'))"
            ".map(r => Number(r.getAttribute('data-rack')));")
        assert sorted(lit) == sorted(racks)
        assert "llm-floor" in driver.find_element(By.ID, "detail").text

        shot = tmp_path / f"ui-{preset}.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 1000
        print(f"\nscreenshot of /ui on {preset}: {shot}")

        # and a release clears the racks again, still without a reload
        httpx.post(url + "/v2/release", json={"job_id": "llm-floor"}, timeout=WAIT_S,
                   headers={"Authorization": f"Bearer {TOKEN}"}).raise_for_status()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "li[data-job='llm-floor']"))
        assert driver.execute_script(
            "return document.querySelectorAll('rect.rack[data-busy=\"0\"]').length") \
            == cluster.num_racks
        assert driver.execute_script("return window.__not_reloaded === true;")
    finally:
        if driver is not None:
            driver.quit()
        stop(proc)
