"""The status page as a person reads it: what it offers, when, and in whose words."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from device import EMOTIONS
from device.config import sections
from tests.web_site import WebSite
from web_config import forms
from web_config.history import COLOURS
from web_config.pages import BEHAVIOUR_FIELDS, MQTT_FIELDS

STYLE = Path(__file__).resolve().parent.parent / "web_config/static/style.css"


def tag(page: str, marker: str) -> str:
    """The opening tag that carries `marker`."""
    match = re.search(rf"<[^<>]*{re.escape(marker)}[^<>]*>", page)
    assert match, f"no tag with {marker}"
    return match.group(0)


def test_with_no_face_it_offers_no_correction_and_no_percentage(site: WebSite) -> None:
    """ "Wrong mood? Correct it" with nobody in view, and "No Face 0 %", made no sense."""
    page = site.text("/")
    assert " hidden" in tag(page, "data-correct=")
    assert " hidden" in tag(page, 'data-status="confidence"')
    assert 'class="blank"' in tag(page, 'data-status="emotion"')
    site.controller.status.update(faces=1, emotion="happy", confidence=0.7, scores={"happy": 0.7})
    page = site.text("/")
    assert " hidden" not in tag(page, "data-correct=")
    assert " hidden" not in tag(page, 'data-status="confidence"')


def test_every_score_bar_has_its_emotions_colour(site: WebSite) -> None:
    """Every bar was the browser's default green, whatever the emotion."""
    page = site.text("/")
    css = STYLE.read_text()
    for emotion in EMOTIONS:
        assert f'class="score-{emotion}"' in tag(page, f'data-score="{emotion}"')
        rule = re.search(rf"meter\.score-{emotion}::-webkit-meter-optimum-value {{([^}}]*)}}", css)
        assert rule and f"var(--{emotion})" in rule.group(1), emotion
        assert f"--{emotion}: {COLOURS[emotion]}" in css, "the timeline's colour"


def test_an_unlinked_spotify_links_to_the_step_that_fixes_it(site: WebSite) -> None:
    page = site.text("/")
    link = tag(page, 'data-show-when="spotify_state=')
    assert 'href="/spotify#login"' in link and " hidden" not in link
    assert " hidden" not in tag(page, 'data-show-when="player=dry-run"')
    site.controller.status.update(spotify_state="linked as Ann", player="spotify")
    page = site.text("/")
    assert " hidden" in tag(page, 'data-show-when="spotify_state=')
    assert " hidden" in tag(page, 'data-show-when="player=dry-run"')


def test_help_texts_are_written_for_a_person(site: WebSite) -> None:
    """The pages showed the config file's wording ("dry-run logs what it would play",
    "false: one per entity"); every field on them has its own words for a person."""
    for name in (*BEHAVIOUR_FIELDS, *MQTT_FIELDS, "spotify.client_id"):
        section, key = name.split(".")
        fields = dataclasses.fields(sections()[section])
        file_doc = next(f.metadata["doc"] for f in fields if f.name == key)
        assert forms.describe(name).doc != file_doc, name
    pages = site.text("/behaviour") + site.text("/mqtt")
    for file_words in ("dry-run logs what it would play", "false: one per entity", "0..1"):
        assert file_words not in pages


def test_reset_to_the_shipped_model_is_not_the_main_action(site: WebSite) -> None:
    """Reset deletes what the household taught: it asks first and looks like it."""
    page = site.text("/teach")
    form = tag(page, 'action="/teach/reset"')
    assert "data-confirm=" in form
    reset = re.search(r'action="/teach/reset".*?<button([^>]*)>', page, re.S)
    assert reset and 'class="quiet-danger"' in reset.group(1)
