"""The mood machine's guarantees: calm switching, flicker immunity, presence, determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device import EMOTIONS
from device.mood import (
    MoodChanged,
    MoodMachine,
    MoodSettings,
    PresenceChanged,
    combine_faces,
)

SETTINGS = MoodSettings(
    time_constant_s=1.0,
    threshold=0.45,
    dwell_s=3.0,
    min_switch_interval_s=20.0,
    absent_after_s=10.0,
)


def one_hot(emotion: str) -> np.ndarray:
    probs = np.zeros(len(EMOTIONS))
    probs[EMOTIONS.index(emotion)] = 1.0
    return probs


def feed(
    machine: MoodMachine, start: float, seconds: float, probs: np.ndarray | None, fps: float = 5.0
) -> list:
    events = []
    steps = round(seconds * fps)
    for i in range(steps):
        events += machine.observe(start + i / fps, probs)
    return events


def test_a_held_emotion_becomes_the_mood_after_the_dwell() -> None:
    machine = MoodMachine(EMOTIONS, SETTINGS)
    events = feed(machine, 0.0, 5.0, one_hot("happy"))
    assert events[0] == PresenceChanged(0.0, True)
    change = events[1]
    assert isinstance(change, MoodChanged)
    assert (change.mood, change.previous) == ("happy", None)
    assert 3.0 <= change.at <= 3.2
    assert "happy held 3.0 s" in change.reason


def test_the_minimum_interval_delays_the_next_switch() -> None:
    machine = MoodMachine(EMOTIONS, SETTINGS)
    feed(machine, 0.0, 5.0, one_hot("happy"))  # happy at ~3.0 s
    events = feed(machine, 5.0, 30.0, one_hot("sad"))
    changes = [e for e in events if isinstance(e, MoodChanged)]
    assert [c.mood for c in changes] == ["sad"]
    assert changes[0].at >= 3.0 + SETTINGS.min_switch_interval_s


def test_absence_then_return_keeps_the_mood() -> None:
    machine = MoodMachine(EMOTIONS, SETTINGS)
    feed(machine, 0.0, 5.0, one_hot("happy"))
    events = feed(machine, 5.0, 12.0, None)
    assert len(events) == 1 and events[0].present is False
    assert events[0].at == pytest.approx(4.8 + SETTINGS.absent_after_s)  # last face at 4.8 s
    assert machine.mood == "happy" and machine.scores() == {}
    events = feed(machine, 17.0, 1.0, one_hot("happy"))
    assert events == [PresenceChanged(17.0, True)]


def test_a_short_dropout_is_not_absence() -> None:
    machine = MoodMachine(EMOTIONS, SETTINGS)
    feed(machine, 0.0, 2.0, one_hot("happy"))
    assert feed(machine, 2.0, 5.0, None) == []
    assert machine.present


def test_below_threshold_there_is_no_candidate() -> None:
    machine = MoodMachine(EMOTIONS, SETTINGS)
    flat = np.full(len(EMOTIONS), 1 / len(EMOTIONS))
    events = feed(machine, 0.0, 10.0, flat)
    assert [type(e) for e in events] == [PresenceChanged]
    assert machine.candidate is None


def test_smoothing_is_independent_of_frame_rate() -> None:
    """A time constant in seconds: 2 fps and 30 fps reach the same mood at the same time."""
    times = []
    for fps in (2.0, 30.0):
        machine = MoodMachine(EMOTIONS, SETTINGS)
        feed(machine, 0.0, 10.0, one_hot("neutral"), fps)
        events = feed(machine, 30.0, 10.0, one_hot("surprise"), fps)
        times += [e.at for e in events if isinstance(e, MoodChanged) and e.mood == "surprise"]
    assert len(times) == 2 and abs(times[0] - times[1]) <= 0.5


def test_largest_face_or_room_average() -> None:
    happy, sad = one_hot("happy"), one_hot("sad")
    faces = [(100.0, happy), (400.0, sad), (50.0, sad)]
    assert combine_faces(faces, "largest") is sad
    assert np.allclose(combine_faces(faces, "room"), (happy + 2 * sad) / 3)
    assert combine_faces([], "room") is None


distributions = (
    st.lists(st.floats(0.0, 1.0), min_size=len(EMOTIONS), max_size=len(EMOTIONS))
    .filter(lambda p: sum(p) > 0.01)
    .map(lambda p: np.asarray(p) / sum(p))
)
observations = st.lists(
    st.tuples(st.floats(0.02, 5.0), st.one_of(st.none(), distributions)), max_size=200
)
timings = st.builds(
    MoodSettings,
    st.floats(0.0, 5.0),
    st.floats(0.2, 0.9),
    st.floats(0.0, 10.0),
    st.floats(0.0, 60.0),
    st.floats(1.0, 30.0),
)


def run(settings_: MoodSettings, steps: list) -> list:
    machine = MoodMachine(EMOTIONS, settings_)
    now, events = 0.0, []
    for dt, probs in steps:
        now += dt
        events += machine.observe(now, probs)
    return events


@settings(max_examples=300, deadline=None)
@given(timings, observations)
def test_never_two_mood_changes_closer_than_the_minimum_interval(settings_, steps) -> None:
    changes = [e.at for e in run(settings_, steps) if isinstance(e, MoodChanged)]
    assert all(b - a >= settings_.min_switch_interval_s for a, b in itertools.pairwise(changes))


@settings(max_examples=300, deadline=None)
@given(timings, observations)
def test_the_same_inputs_always_give_the_same_outputs(settings_, steps) -> None:
    assert run(settings_, steps) == run(settings_, steps)


@settings(max_examples=300, deadline=None)
@given(
    steady=st.sampled_from(EMOTIONS),
    flicker=st.sampled_from(EMOTIONS),
    dwell=st.floats(0.5, 10.0),
    tau=st.floats(0.0, 5.0),
    fraction=st.floats(0.0, 0.99),
    fps=st.sampled_from([2.0, 5.0, 15.0, 30.0]),
)
def test_a_flicker_shorter_than_the_dwell_never_changes_the_mood(
    steady, flicker, dwell, tau, fraction, fps
) -> None:
    """Once a mood is established, another expression for less than the dwell time
    (however fast the frames come) leaves it alone."""
    settings_ = MoodSettings(tau, 0.45, dwell, 0.0, 30.0)
    machine = MoodMachine(EMOTIONS, settings_)
    settle = dwell + 10 * tau + 1.0
    feed(machine, 0.0, settle, one_hot(steady), fps)
    assert machine.mood == steady
    flicker_s = fraction * dwell
    events = feed(machine, settle, flicker_s, one_hot(flicker), fps)
    events += feed(machine, settle + flicker_s, settle, one_hot(steady), fps)
    assert not [e for e in events if isinstance(e, MoodChanged)]
    assert machine.mood == steady
