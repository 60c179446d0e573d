import numpy as np
import pytest

from kgates.study._code import ALPHABET, code_text, encode_text, stdlib_sources
from kgates.study._data import copy_memory, digits
from kgates.study._tasks import OBJECTIVES, TASKS, make_task, task_sizes


def test_copy_memory_worked_by_hand():
    x, y = copy_memory(n=40, delay=3, symbols=2, seed=1)
    assert x.shape == (40, 3 + 2 * 2, 10) and y.shape == (40, 7)
    steps = x.argmax(-1)
    np.testing.assert_array_equal(x.sum(-1), 1.0)  # one-hot
    np.testing.assert_array_equal(steps[:, 2:4], 0)  # delay - 1 blanks
    np.testing.assert_array_equal(steps[:, 4], 9)  # the marker, `delay` steps on
    np.testing.assert_array_equal(steps[:, 5:], 0)  # the answer steps are blank
    np.testing.assert_array_equal(y[:, :5], 0)  # say blank until the marker's step
    np.testing.assert_array_equal(y[:, 5:], steps[:, :2])  # then the symbols, in order
    assert steps[:, :2].min() >= 1 and steps[:, :2].max() <= 8
    np.testing.assert_array_equal(copy_memory(40, 3, 2, seed=1)[0], x)


def test_the_copy_baseline_is_a_model_that_says_blank_then_guesses():
    task = make_task("copy", samples=8, delay=50, symbols=10)
    assert task.baseline == pytest.approx(10 * np.log(8) / 70)  # Arjovsky et al.'s
    # the same, worked out as the loss of such a model's logits on the validation data
    logits = np.full(task.y_val.shape + (10,), -1e9)
    logits[:, :-10, 0] = 0.0
    logits[:, -10:, 1:9] = 0.0
    loss = task.loss()(task.y_val, logits.astype("float32"))
    assert float(loss) == pytest.approx(task.baseline, rel=1e-5)


def test_digits_rows_are_sequences_and_split_is_stratified():
    x, x_val, y, y_val = (digits(seed=0)[k] for k in (0, 1, 2, 3))
    from sklearn.datasets import load_digits

    data = load_digits()
    assert x.shape[1:] == (8, 8) and len(x) + len(x_val) == len(data.images)
    assert 0.0 <= x.min() and x.max() <= 1.0
    # Each sequence is one image, row by row: it is in the original data.
    originals = {im.tobytes() for im in (data.images / 16.0).astype("float32")}
    assert all(im.tobytes() in originals for im in x_val[:20])
    # Stratified: every class holds ~20% out.
    shares = np.bincount(y_val, minlength=10) / np.bincount(data.target, minlength=10)
    assert np.all(np.abs(shares - 0.2) < 0.03)


def test_code_text_is_the_standard_library_shifted_by_one():
    x, y, x_val, y_val = code_text(n=50, length=40, seed=0)
    assert x.shape == (50, 40) and x_val.shape == (10, 40)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # next-character targets
    np.testing.assert_array_equal(x_val[:, 1:], y_val[:, :-1])
    text = "".join(ALPHABET[c - 1] if c else "?" for c in np.concatenate([x.ravel(), y[-1]]))
    assert "import " in text or "def " in text  # real Python source
    sources = stdlib_sources()
    assert any(p.endswith("os.py") for p in sources)
    assert not any("site-packages" in p for p in sources)
    np.testing.assert_array_equal(code_text(n=50, length=40, seed=0)[0], x)


def test_encode_text_by_hand():
    np.testing.assert_array_equal(encode_text("a\n\u00e9"), [ALPHABET.index("a") + 1, 1, 0])


def test_make_task_sizes_and_objectives():
    assert set(TASKS) == set(OBJECTIVES) == {"adding", "copy", "digits", "code", "music"}
    assert task_sizes("copy") == {"samples": 2000, "delay": 50, "symbols": 10}
    task = make_task("copy", samples=16, delay=4, symbols=3)
    assert task.x_train.shape == (16, 10, 10) and task.objective == "val_loss"
    assert task.timescale == 10 and task.answer == 0 and task.y_train.shape == (16, 10)
    task = make_task("adding", samples=64, length=10)
    assert task.baseline == pytest.approx(np.mean((task.y_val - task.y_train.mean()) ** 2))


@pytest.mark.parametrize(
    ("name", "sizes", "match"),
    [
        ("sorting", {}, "unknown task 'sorting'"),
        ("digits", {"length": 3}, "no size option 'length'"),
        ("adding", {"length": 0}, "`length`"),
        ("copy", {"samples": 2.5}, "`samples`"),
    ],
)
def test_make_task_bad_input(name, sizes, match):
    with pytest.raises(ValueError, match=match):
        make_task(name, **sizes)


def test_adding_baselines_by_hand():
    task = make_task("adding", samples=4000, length=12)
    x, y = task.x_val, task.y_val[:, 0]
    recent = np.array([row[np.flatnonzero(row[:, 1])[-1], 0] for row in x])  # second marker
    assert task.baselines["always the mean"] == pytest.approx(
        np.mean((y - task.y_train.mean()) ** 2)
    )
    assert task.baselines["recent marked value + 0.5"] == pytest.approx(
        np.mean((y - recent - 0.5) ** 2)
    )
    # the first marked value is uniform on [0, 1): what is left is its variance, 1/12
    assert task.baselines["recent marked value + 0.5"] == pytest.approx(1 / 12, abs=0.01)


def test_code_characters_decode_back_to_their_text():
    # the Gates tab's tokens of a `kgates tune --task code` search
    from kgates.study._code import decode_text, encode_text

    text = "def f(x):\n\treturn {'a': 1}  # é"
    assert "".join(decode_text(encode_text(text))) == text.replace("é", "\ufffd")


def test_the_code_task_reports_the_bigram_beside_the_unigram():
    task = make_task("code", samples=400, length=50)
    unigram, bigram = task.baselines["unigram frequencies"], task.baselines["bigram frequencies"]
    assert task.baseline == unigram
    # Python source: the current character tells a lot about the next one
    assert 0 < bigram < unigram < np.log(task.outputs)


def test_the_code_task_splits_files_by_a_hash_of_their_paths():
    from kgates.study._code import code_corpus, code_windows, encode_text

    corpus = code_corpus()
    paths = {part: set(about["paths"]) for part, about in corpus.items()}
    assert not (paths["train"] & paths["val"] or paths["train"] & paths["test"])
    assert paths["train"] | paths["val"] | paths["test"] == set(stdlib_sources())
    assert corpus["train"]["characters"] >= 1_000_000 and corpus["train"]["files"] >= 100
    assert corpus["val"]["files"] >= 20 and corpus["test"]["files"] >= 20
    a, b = code_windows(20, 30, seed=0), code_windows(20, 30, seed=1)
    assert not np.array_equal(a["train"][0], b["train"][0])  # fresh for each seed
    for part in ("val", "test"):  # the same for every seed
        np.testing.assert_array_equal(a[part][0], b[part][0])
    # every window is a piece of one file of its own part
    texts = {}
    for part in ("train", "test"):
        texts[part] = [encode_text(open(p, encoding="utf-8", errors="replace").read()).tobytes()
                       for p in sorted(paths[part])]  # fmt: skip
    for part in ("train", "test"):
        for x, y in zip(*a[part]):
            window = np.concatenate([x, y[-1:]]).astype("int32").tobytes()
            assert any(window in text for text in texts[part])


@pytest.mark.parametrize("name", ["adding", "copy"])
def test_the_generated_tasks_draw_their_test_split_apart(name):
    a, b = make_task(name, seed=0, samples=40), make_task(name, seed=1, samples=40)
    assert len(a.x_test) == len(a.x_val) == 10
    for x in (a.x_train, a.x_val, b.x_train, b.x_val):  # no test sequence elsewhere
        assert not any(np.array_equal(t, u) for t in a.x_test for u in x)
    np.testing.assert_array_equal(make_task(name, seed=0, samples=40).x_test, a.x_test)
