"""Word timing from CTC frames, and the windows that cut long audio."""

import numpy as np
import pytest

from app.decoding import path_probabilities, path_words
from app.transcriber import WindowPlanner, WindowResult, plan_windows, stitch
from quantizer.ctc import frame_log_probabilities
from quantizer.nemo_configs import ENGLISH_LABELS

BLANK = len(ENGLISH_LABELS)
FRAME_S = 0.02


def ids(text: str) -> list[int]:
    return [BLANK if c == "_" else ENGLISH_LABELS.index(c) for c in text]


def test_words_take_their_times_and_confidence_from_the_frames_that_emit_them():
    tokens = np.array(ids("__hh_i__ _tt_h_ee__"))
    probabilities = np.linspace(0.5, 0.9, len(tokens)).astype(np.float32)
    words = path_words(tokens, probabilities, ENGLISH_LABELS, FRAME_S)
    assert [w.word for w in words] == ["hi", "the"]
    assert words[0].start == pytest.approx(2 * FRAME_S) and words[0].end == pytest.approx(6 * FRAME_S)
    assert words[1].start == pytest.approx(10 * FRAME_S) and words[1].end == pytest.approx(17 * FRAME_S)
    assert words[0].confidence == pytest.approx(probabilities[[2, 3, 5]].mean(), abs=1e-4)


def test_a_pieces_words_are_timed_from_where_the_piece_starts():
    tokens = np.array(ids("_hi_ the"))
    alone = path_words(tokens, np.ones(8, np.float32), ENGLISH_LABELS, FRAME_S)
    later = path_words(tokens, np.ones(8, np.float32), ENGLISH_LABELS, FRAME_S, first_frame=100)
    assert [w.word for w in later] == [w.word for w in alone] == ["hi", "the"]
    assert [w.start for w in later] == pytest.approx([w.start + 100 * FRAME_S for w in alone])
    assert [w.end for w in later] == pytest.approx([w.end + 100 * FRAME_S for w in alone])


def test_a_letter_repeated_across_a_blank_is_two_letters():
    words = path_words(np.array(ids("s_ee_e")), np.ones(6, np.float32), ENGLISH_LABELS, FRAME_S)
    assert [w.word for w in words] == ["see"]  # s, ee merged, blank, e


def test_integer_logits_are_scaled_before_the_softmax():
    logits = np.array([[100, 0], [0, 300]], np.int32)  # classes x frames
    log_probabilities = frame_log_probabilities(logits, scale=0.01)
    assert log_probabilities.shape == (2, 2)  # frames x classes
    assert log_probabilities.argmax(1).tolist() == [0, 1]
    probabilities = path_probabilities(log_probabilities, np.array([0, 0]))
    assert probabilities[0] == pytest.approx(1 / (1 + np.exp(-1.0)), rel=1e-5)
    assert probabilities[1] == pytest.approx(1 / (1 + np.exp(3.0)), rel=1e-5)  # the path's class, not the best


@pytest.mark.parametrize("total", [320 * 10, 320 * 200 + 17, 320 * 1000, 320 * 1234 + 5])
def test_windows_keep_every_output_frame_exactly_once(total):
    frame, window, overlap = 320, 320 * 100, 320 * 10
    windows = plan_windows(total, window, overlap, frame)
    assert windows[0].start == 0 and windows[-1].stop == total
    assert all(w.stop - w.start <= window and w.start % frame == 0 for w in windows)
    global_frames = [w.start // frame + t for w in windows for t in range(w.keep_from, w.keep_to)]
    assert global_frames == list(range(-(-total // frame)))
    results = [  # each frame's one "class" is its global index
        WindowResult(np.arange(w.start // frame, w.start // frame + w.keep_to, dtype=np.float32)[:, None], 0, 1, 0, 0)
        for w in windows
    ]
    assert stitch(windows, results)[:, 0].tolist() == global_frames


@pytest.mark.parametrize("total", [320 * 10, 320 * 100, 320 * 100 + 1, 320 * 1234 + 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_windows_planned_as_audio_arrives_are_those_of_the_whole_audio(total, seed):
    """WindowPlanner gives each window once its samples are all in, whatever the pieces the audio
    arrives in, and with the end: exactly plan_windows' windows."""
    frame, window, overlap = 320, 320 * 100, 320 * 10
    planner, received, windows = WindowPlanner(overlap, window - 2 * overlap, overlap, frame), 0, []
    rng = np.random.default_rng(seed)
    while received < total:
        received = min(total, received + int(rng.integers(1, 320 * 60)))
        ready = planner.ready(received)
        assert all(w.stop < received for w in ready)  # never a window whose samples are not all in
        windows += ready
    windows += planner.rest(total)
    assert windows == plan_windows(total, window, overlap, frame)


@pytest.mark.parametrize("total", [320 * 10, 320 * 251, 320 * 1234 + 5])
def test_lopsided_windows_keep_every_frame_once_with_the_context_asked_for(total):
    """More context before the kept frames than after (a live stream's latency is the context after)."""
    frame, left, keep, right = 320, 320 * 100, 320 * 25, 320 * 50
    windows = WindowPlanner(left, keep, right, frame).rest(total)
    global_frames = [w.start // frame + t for w in windows for t in range(w.keep_from, w.keep_to)]
    assert global_frames == list(range(-(-total // frame)))
    for w in windows[1:-1]:
        assert (w.keep_from, w.stop - w.start - w.keep_to * frame) == (100, 320 * 50)
    with pytest.raises(ValueError, match="at least one frame"):
        WindowPlanner(left, 319, right, frame)
