"""The Teach page, Reset and "Wrong mood" through the real Flask app and a live service."""

from __future__ import annotations

from device import EMOTIONS
from device.teach import CalibrationService
from tests.test_calibration import NEUTRAL, Clock, prediction, synthetic, teach
from tests.web_site import WebSite


def wire(site: WebSite) -> tuple[CalibrationService, Clock]:
    clock = Clock()
    service = CalibrationService(
        site.state_dir, EMOTIONS, "m1", site.controller.status, clock=clock
    )
    service.register(site.controller)
    return service, clock


def api_post(site: WebSite, path: str, body: dict[str, str] | None = None):
    return site.client.post(path, json=body or {}, headers={"X-CSRF-Token": site.csrf()})


def test_without_a_model_the_page_says_why(site: WebSite) -> None:
    """No emotion model loaded: a clear 400, not a crash."""
    assert "shipped model" in site.text("/teach")
    answer = api_post(site, "/api/teach/start")
    assert answer.status_code == 400 and "not loaded" in answer.get_json()["error"]


def test_posts_need_the_csrf_token_and_a_login(site: WebSite, fresh_site: WebSite) -> None:
    wire(site)
    assert site.client.post("/api/teach/start", json={}).status_code == 400
    assert site.client.post("/teach/reset", data={}).status_code == 400
    site.client.post("/logout", data={"csrf_token": site.csrf()})
    assert site.client.get("/api/teach").status_code == 401


def test_teach_save_then_reset_from_the_page(site: WebSite) -> None:
    """Start, the prompts run, the figures come back, Save installs a calibration, Reset
    removes it and its file."""
    service, clock = wire(site)
    started = api_post(site, "/api/teach/start").get_json()
    assert (started["emotion"], started["active"]) == ("neutral", True)
    early = api_post(site, "/api/teach/finish")
    assert early.status_code == 400 and "still running" in early.get_json()["error"]
    service.teach_discard()
    teach(service, clock, synthetic(30))
    assert site.client.get("/api/teach").get_json()["active"] is False
    figures = api_post(site, "/api/teach/finish").get_json()
    assert figures["accuracy_after"] > figures["accuracy_before"]
    assert set(figures["counts"]) == set(EMOTIONS)
    page = site.post("/teach/save", follow_redirects=True).get_data(as_text=True)
    assert f"Saved {figures['samples']} samples" in page
    assert service.wait_idle(10)
    assert "calibrated:" in site.text("/teach")
    assert (site.state_dir / "calibration.npz").exists()
    page = site.post("/teach/reset", follow_redirects=True).get_data(as_text=True)
    assert "Back to the shipped model" in page
    assert not (site.state_dir / "calibration.npz").exists()


def test_wrong_mood_from_the_status_page(site: WebSite) -> None:
    """The status page's control relabels the last seconds against the current mood; bad
    input is refused with the reason."""
    service, _ = wire(site)
    assert 'data-correct="/api/correct"' in site.text("/")
    faces = synthetic(30)
    for i in range(30):
        service.observe_frame(i / 10, [prediction(NEUTRAL, i, faces)])
    site.controller.status.update(mood="sad")
    assert api_post(site, "/api/correct", {"right": "joyful"}).status_code == 400
    assert "already" in api_post(site, "/api/correct", {"right": "sad"}).get_json()["error"]
    answer = api_post(site, "/api/correct", {"right": "neutral"})
    assert answer.status_code == 200 and answer.get_json()["frames"] == 30
    assert service.wait_idle(10)
