"""The music task: Bach chorales from music21's corpus as 88-key piano rolls."""

import numpy as np
import pytest

import kgates
from kgates.study import _music as music
from kgates.study import _report as report
from kgates.study._hypermodel import key_nll
from kgates.study._tasks import make_task


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_roll_sounds_what_music21s_chordify_sounds(index):
    # An independent reading of the score: music21's own vertical slices, sampled
    # at each eighth note.
    from music21 import corpus

    name = music.chorale_names()[index]
    roll = music.piano_roll(name)
    chords = corpus.parse(name).chordify().flatten().getElementsByClass("Chord")
    expected = np.zeros_like(roll)
    for t in range(len(roll)):
        time = t * music.STEP
        for chord in chords:
            if chord.offset <= time < chord.offset + chord.quarterLength:
                expected[t, [p.midi - 21 for p in chord.pitches]] = 1
    np.testing.assert_array_equal(roll, expected)
    assert 3 <= roll.sum(1).mean() <= 6  # four voices; some chorales add instruments


def test_steps_of_bwv308_worked_by_hand():
    # From the score, at quarter note 6 (step 12): B-flat 2 and F4 and D5 for a
    # quarter, B-flat 3 for an eighth, then A-flat 3 at 6.5 (step 13).
    roll = music.piano_roll("bach/bwv308")
    assert np.flatnonzero(roll[12]).tolist() == [k - 21 for k in (46, 58, 65, 74)]
    assert np.flatnonzero(roll[13]).tolist() == [k - 21 for k in (46, 56, 65, 74)]
    assert len(roll) == 80  # 40 quarter notes


def test_the_split_is_fixed_by_name_and_training_windows_by_seed():
    names = music.chorale_names()
    assert len(names) == music.CHORALES == len(set(names))
    shares = {s: sum(music.split_of(n) == s for n in names) / len(names) for s in ("train", "val")}
    assert shares["train"] == pytest.approx(0.6, abs=0.05)
    assert shares["val"] == pytest.approx(0.2, abs=0.05)
    a, b = (music.bach_chorales(32, 16, seed, chorales=20) for seed in (0, 1))
    for split in ("val", "test"):  # the same for every seed
        np.testing.assert_array_equal(a[split][0], b[split][0])
    assert not np.array_equal(a["train"][0], b["train"][0])  # fresh for each seed
    x, y = a["train"]
    assert x.shape == y.shape == (32, 16, 88)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x one step later
    # every training window is a piece of a training chorale
    rolls = music.rolls_by_split(20)["train"]
    window = np.concatenate([x[0], y[0, -1:]]).astype("uint8")
    assert any(
        np.array_equal(roll[s : s + 17], window) for roll in rolls for s in range(len(roll) - 16)
    )


def test_key_nll_against_float64():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (2, 5, 88))
    y = (rng.random((2, 5, 88)) < 0.1).astype("float64")
    p = 1 / (1 + np.exp(-logits))
    expected = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(-1)
    got = np.asarray(key_nll(y.astype("float32"), logits.astype("float32")))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_key_baselines_worked_by_hand():
    # key 0 sounds at steps 0 and 1 of 4; no other key ever sounds (add-one smoothing)
    y_train = np.zeros((1, 4, 88))
    y_train[0, :2, 0] = 1
    x_val, y_val = np.zeros((1, 1, 88)), np.zeros((1, 1, 88))
    y_val[0, 0, 0] = 1
    got = music.key_baselines(y_train, x_val, y_val)
    # frequencies: key 0 (2+1)/(4+2) = 1/2, the others 1/6
    assert got["key frequencies"] == pytest.approx(-np.log(1 / 2) - 87 * np.log(5 / 6))
    # Markov: key 0 was off once and went on 0 times: (0+1)/(1+2) = 1/3; the others
    # were off 3 times and stayed off: (0+1)/(3+2) = 1/5 on
    markov = got["key stays or changes (Markov)"]
    assert markov == pytest.approx(-np.log(1 / 3) - 87 * np.log(4 / 5))


def test_a_music_search_scores_negative_log_likelihood_per_step(tmp_path):
    task = make_task("music", samples=32, length=16, chorales=20)
    assert task.x_test.shape[1:] == (16, 88) and len(task.x_test)
    frequencies = task.baselines["key frequencies"]
    assert task.baseline == frequencies > task.baselines["key stays or changes (Markov)"] > 0
    directory = str(tmp_path / "music")
    kgates.tune(
        directory,
        task="music",
        cells=("NP",),
        max_trials=1,
        epochs=5,
        sizes={"samples": 256, "length": 16, "chorales": 20},
        space={"units": 8, "layers": 1, "learning_rate": 0.05, "dropout": 0.0},
        gate_freq=0,
        verbose=0,
    )
    (trial,) = report.load_trials(directory)
    # an untrained model is near 88 * log 2 (every key a coin toss); training takes it
    # to where the keys' frequencies are learned
    assert 0 < trial["score"] < 88 * np.log(2) / 2
