"""The reset supervisor against real episode managers (embedded, real time): its HTTP API, auth, malformed
requests, labels, staleness, and the operator page in a real headless Chromium."""
import json
import os
import shutil
import threading

import pytest
import requests

from efm_reset_supervisor.episode_manager_node import EpisodeManagerNode
from efm_reset_supervisor.node import ResetSupervisor
from efm_runtime import (
    COMMANDS,
    Node,
    NodeOptions,
    build_node,
    create_context,
    get_message,
    middleware,
)

StepReward = get_message("efm_msgs/msg/StepReward")
Image = get_message("sensor_msgs/msg/Image")
TOKEN = "s3cret-token"
MAX_STEPS = 5
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", "/usr/bin/chromedriver"


class World:
    """Two robots with episode managers that wait for a human, a third that never speaks, a supervisor."""

    def __init__(self):
        self.ctx = create_context("embedded")
        for robot in ("a", "b"):
            build_node(EpisodeManagerNode, NodeOptions(namespace=f"/{robot}", context=self.ctx, parameters={
                "auto_reset": False, "max_steps": MAX_STEPS, "reward_timeout_s": 0.0,
                "instructions": ["push the red block to the blue block"]}))
        self.sup = build_node(ResetSupervisor, NodeOptions(context=self.ctx, parameters={
            "robots": ["a", "b", "c"], "web_port": 0, "token": TOKEN, "stale_after_s": 2.0}))
        self.driver = Node("driver", NodeOptions(context=self.ctx))
        self.rewards = {r: self.driver.create_publisher(StepReward, f"/{r}/reward", COMMANDS) for r in ("a", "b")}
        self.thread = threading.Thread(target=self.ctx.spin, daemon=True)
        self.thread.start()
        self.url = self.sup.web.url()
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def tile(self, robot):
        return next(t for t in self.sup.console.snapshot()["robots"] if t["robot"] == robot)

    def wait(self, predicate, timeout_s=10.0):
        fleet = self.sup.fleet
        with fleet.changed:
            assert fleet.changed.wait_for(predicate, timeout_s), "condition not reached"

    def end_episode(self, robot, success=False):
        episode = self.tile(robot)["episode_id"]
        self.ctx.call_soon(lambda: self.rewards[robot].publish(StepReward(
            episode_id=episode, step=MAX_STEPS, success=success, steps_to_go=1.0)))

    def post(self, path, headers=None, **kw):
        return requests.post(self.url + path, headers={**self.auth, **(headers or {})}, timeout=10, **kw)

    def close(self):
        self.ctx.request_shutdown()
        self.thread.join(timeout=10)
        self.ctx.shutdown()


@pytest.fixture
def world():
    if middleware() != "embedded":
        pytest.skip("runs the whole fleet in one embedded process")
    w = World()
    w.wait(lambda: w.sup.fleet.queue() == ["a", "b"])
    yield w
    w.close()


def test_anonymous_and_wrong_token_are_refused_and_change_nothing(world):
    before = world.sup.console.snapshot()["queue"]
    assert requests.get(world.url + "api/state", timeout=5).status_code == 401
    assert requests.get(world.url, timeout=5).status_code == 401
    assert requests.get(world.url + "?token=nope", timeout=5).status_code == 401
    assert requests.post(world.url + "api/robots/a/reset_done", timeout=5).status_code == 401
    assert requests.post(world.url + "api/estop", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    assert world.sup.console.snapshot()["queue"] == before == ["a", "b"]
    assert requests.get(world.url + "healthz", timeout=5).status_code == 200


def test_reset_done_moves_a_robot_out_of_the_queue_and_a_double_click_is_refused(world):
    answer = world.post("api/robots/a/reset_done")
    assert answer.status_code == 200, answer.text
    world.wait(lambda: world.tile("a")["state"] == "running")  # auto_start after the human's reset
    assert world.sup.fleet.queue() == ["b"]
    again = world.post("api/robots/a/reset_done")
    assert again.status_code == 409 and "not waiting" in again.json()["message"]


def test_malformed_requests_get_errors_and_change_nothing(world):
    version = world.sup.fleet.version
    assert world.post("api/robots/a/reboot").status_code == 400
    assert world.post("api/robots/zz/reset_done").status_code == 404
    assert world.post("api/robots/a/reset_done", data="{not json",
                      headers={"Content-Type": "application/json"}).status_code == 422
    assert world.post("api/robots/a/reset_done", json={"episode_id": 5, "x": 1}).status_code == 422
    assert world.sup.fleet.version == version and world.sup.fleet.queue() == ["a", "b"]


def test_label_flow_and_totals(world):
    world.post("api/queue/reset_done")                 # the oldest in the queue: a
    world.wait(lambda: world.tile("a")["state"] == "running")
    world.end_episode("a", success=False)
    world.wait(lambda: world.tile("a")["state"] == "waiting_reset" and world.tile("a")["last_episode"])
    episode = world.tile("a")["last_episode"]["episode_id"]
    answer = world.post("api/robots/a/label_success", json={"episode_id": episode})
    assert answer.status_code == 200, answer.text
    world.wait(lambda: world.tile("a")["last_episode"]["label"] == "success")
    totals = world.sup.console.snapshot()["totals"]
    assert totals["labelled"] == 1 and totals["disagreement_rate"] == 1.0  # the detector said no success
    assert world.tile("a")["state"] == "waiting_reset" and world.sup.fleet.queue() == ["b", "a"]


def test_estop_all_wins_and_a_reset_done_clears_one(world):
    answer = world.post("api/estop")
    assert answer.status_code == 409  # c has no episode manager: said so, and a and b are stopped anyway
    assert {r["robot"]: r["outcome"] for r in answer.json()} == {"a": "accepted", "b": "accepted", "c": "refused"}
    world.wait(lambda: world.tile("a")["state"] == world.tile("b")["state"] == "estopped")
    assert world.sup.fleet.queue() == []
    assert world.post("api/robots/b/reset_done").status_code == 200
    world.wait(lambda: world.tile("b")["state"] == "running")  # the human's reset also counts as the scene reset
    assert world.tile("a")["state"] == "estopped"


def test_silent_robot_is_shown_stale_and_second_page_sees_the_same_state(world):
    assert world.tile("c")["state"] == "unknown"
    world.wait(lambda: world.tile("c")["stale"], timeout_s=5.0)  # stale_after_s = 2
    with requests.get(world.url + "api/events", headers=world.auth, stream=True, timeout=10) as events:
        line = next(l for l in events.iter_lines() if l.startswith(b"data: "))
    streamed = json.loads(line[6:])
    state = requests.get(world.url + "api/state", headers=world.auth, timeout=5).json()
    assert streamed["queue"] == state["queue"] == ["a", "b"]
    assert [t["state"] for t in streamed["robots"]] == [t["state"] for t in state["robots"]]


def test_thumbnail_is_a_small_jpeg(world):
    frame = Image(height=90, width=320, encoding="rgb8", step=960, data=bytes(90 * 960))
    pub = world.driver.create_publisher(Image, "/a/camera/top/image_raw", COMMANDS)
    world.ctx.call_soon(lambda: pub.publish(frame))
    world.wait(lambda: world.tile("a")["thumbnail_seq"] > 0)
    jpeg = requests.get(world.url + "api/robots/a/thumbnail", headers=world.auth, timeout=5)
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    assert requests.get(world.url + "api/robots/b/thumbnail", headers=world.auth, timeout=5).status_code == 404


# ---- the page in a real browser -------------------------------------------------------------------
@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(f"chromium or chromedriver missing ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium "
                    f"chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[test]' installs selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download
    yield driver
    driver.quit()


def test_page_shows_waiting_robot_and_reset_done_click_moves_it_on(world, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def click(driver, selector):
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True

    browser.get(world.url + f"?token={TOKEN}")
    # the page redraws its tiles on every update, so an element found a moment ago may be gone: look again
    wait = WebDriverWait(browser, 15, ignored_exceptions=[StaleElementReferenceException])
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#queue li[data-robot='a']"))
    wait.until(lambda d: d.find_element(By.ID, "tile-a").get_attribute("data-state") == "waiting_reset")
    wait.until(lambda d: click(d, "#tile-a button[data-action='reset_done']"))
    wait.until(lambda d: d.find_element(By.ID, "tile-a").get_attribute("data-state") in ("ready", "running"))
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#queue li[data-robot='a']"))
    assert world.tile("a")["state"] in ("ready", "running")
    assert world.tile("b")["state"] == "waiting_reset"  # one click, one robot
    # the keyboard: Space is "reset done for the oldest in the queue" (b now)
    browser.find_element(By.TAG_NAME, "body").send_keys(" ")
    wait.until(lambda d: d.find_element(By.ID, "tile-b").get_attribute("data-state") in ("ready", "running"))


def test_page_refuses_a_wrong_token(world, browser):
    from selenium.webdriver.common.by import By

    browser.get(world.url + "?token=wrong")
    assert "Wrong token" in browser.find_element(By.TAG_NAME, "body").text
    assert not browser.find_elements(By.ID, "tiles")
    assert world.sup.fleet.queue() == ["a", "b"]
