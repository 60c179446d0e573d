"""The `code` task's annotations (`annotate_code`), against Python's own tokenizer
on standard-library files, and aligned with the task's windows."""

import io
import tokenize

import numpy as np
import pytest

from kgates.study._code import (
    ALPHABET,
    CODE_ANNOTATIONS,
    annotate_code,
    code_annotations,
    code_text,
    stdlib_sources,
)


def _tokenizer_spans(text):
    """in_string, in_comment and depth per character, from `tokenize`."""
    starts = np.r_[0, np.cumsum([len(line) for line in text.splitlines(keepends=True)])]
    size = len(text)
    in_string, in_comment = np.zeros(size, bool), np.zeros(size, bool)
    depth = np.zeros(size, int)
    opened = None
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        first = starts[token.start[0] - 1] + token.start[1]
        end = starts[token.end[0] - 1] + token.end[1]
        kind = tokenize.tok_name[token.type]
        if kind == "FSTRING_START":  # Python >= 3.12 splits f-strings
            opened = first
        elif kind == "FSTRING_END":
            in_string[opened:end] = True
        elif kind == "STRING":
            in_string[first:end] = True
        elif kind == "COMMENT":
            in_comment[first:end] = True
        elif kind == "OP" and token.string in "([{":
            depth[first:] += 1
        elif kind == "OP" and token.string in ")]}":
            depth[first:] -= 1
    return in_string, in_comment, depth


@pytest.mark.parametrize("k", range(0, 400, 50))
def test_strings_comments_and_brackets_agree_with_pythons_tokenizer(k):
    files = stdlib_sources()
    for path in files[k % len(files) :] + files:  # the k-th file Python's tokenizer reads
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            expected = _tokenizer_spans(text)
            break
        except (tokenize.TokenError, SyntaxError):
            continue
    notes = annotate_code(text)
    for name, want in zip(("in_string", "in_comment", "depth"), expected):
        np.testing.assert_array_equal(notes[name], want, err_msg=f"{name} in {path}")


def test_a_small_example_worked_by_hand():
    text = 'f(a, "(")  # x\n  [1]\n'
    notes = annotate_code(text)
    assert (
        "".join("s" if v else "." for v in notes["in_string"])
        == ".....sss.............."[: len(text)]
    )
    assert notes["depth"].tolist() == [
        0,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        1,
        0,
        0,
    ]
    assert notes["indent"].tolist() == [0] * 15 + [2] * 6
    assert notes["column"].tolist() == [*range(15), *range(6)]
    assert notes["in_comment"].tolist() == [False] * 11 + [True] * 3 + [False] * 7


def test_the_annotations_line_up_with_the_tasks_windows():
    x_train, _, x_val, _ = code_text(30, 60, seed=1)
    train, val = code_annotations(30, 60, seed=1)
    assert set(train) == set(CODE_ANNOTATIONS)
    for x, notes in ((x_train, train), (x_val, val)):
        assert all(a.shape == x.shape for a in notes.values())
        newline = x == ALPHABET.index("\n") + 1
        column = notes["column"]
        # after a newline the column restarts; elsewhere it counts on
        assert (column[:, 1:][newline[:, :-1]] == 0).all()
        assert (column[:, 1:] == column[:, :-1] + 1)[~newline[:, :-1]].all()
