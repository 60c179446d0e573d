"""The Gates tab for real: a TensorBoard process on 127.0.0.1 serving the plugin,
headless Chromium (Debian's `chromium` and `chromium-driver`, which `.ci/run`
installs) driving the tab and the exported page, all checked against NumPy on
`kgates.trace` and `kgates.memory` of the same probe."""

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

import kgates
from kgates.cli import main

pytestmark = pytest.mark.processes  # its own processes: TensorFlow session only

CHARS = "_abcd"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(1, 5, (24, 30))
    x[1::4, 22:] = 0  # padded
    y = (x == 2).sum(axis=1, keepdims=True) / 10.0
    inputs = keras.Input((30,))
    h = keras.layers.Embedding(5, 4, mask_zero=True)(inputs)
    h = keras.layers.LSTM(6, return_sequences=True, name="lstm")(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GRU(3, name="gru")(h)))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    logdir = str(tmp_path_factory.mktemp("runs") / "exp1")
    callback = kgates.TensorBoard(
        logdir,
        probe=(x, y),
        probe_text=lambda row: [CHARS[i] for i in row],
        explorer_freq=1,
        image_freq=0,
        gradients=False,
    )
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    traced = kgates.trace(model, x)
    stored = {
        k: np.ma.filled(v, 0).astype(np.float16).astype(np.float64)
        for k, v in traced["lstm"].items()
    }
    return {"logdir": logdir, "model": model, "x": x, "traced": traced, "lstm": stored}


@pytest.fixture(scope="module")
def board(trained):
    command = "import sys, kgates_cli; sys.exit(kgates_cli.main())"
    logs = os.path.dirname(trained["logdir"])
    process = subprocess.Popen(
        [sys.executable, "-c", command, "board", logs, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.daemon = True
    reader.start()
    url = None
    try:
        while url is None:
            line = lines.get(timeout=90)
            if " at http://127.0.0.1:" in line:
                url = line.split(" at ")[1].split()[0]
        deadline = time.time() + 60
        while time.time() < deadline:  # TensorBoard reads the event files in the background
            try:
                with urllib.request.urlopen(url + "data/plugin/kgates/runs") as response:
                    if json.load(response).get("exp1/train") == [0, 1]:
                        break
            except urllib.error.URLError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def get(url, binary=False):
    with urllib.request.urlopen(url) as response:
        body = response.read()
    return body if binary else json.loads(body)


def test_the_plugin_routes_serve_the_trace(board, trained):
    listing = get(board + "data/plugins_listing")["kgates"]
    assert listing["enabled"] and listing["tab_name"] == "Gates"
    assert listing["loading_mechanism"]["module_path"] == "/data/plugin/kgates/index.js"
    base = board + "data/plugin/kgates/"
    assert get(base + "runs") == {"exp1/train": [0, 1]}
    meta = get(base + "meta?run=exp1/train&step=1")
    assert [layer["name"] for layer in meta["layers"]] == ["lstm", "gru"]
    assert meta["tokens"][1][:3] == [CHARS[i] for i in trained["x"][1, :3]]
    raw = get(base + "array?run=exp1/train&step=1&name=lstm/c", binary=True)
    c = np.frombuffer(raw, np.float16).reshape(24, 30, 6)
    np.testing.assert_array_equal(c, trained["lstm"]["c"].astype(np.float16))
    valid = np.frombuffer(get(base + "array?run=exp1/train&step=1&name=valid", True), np.uint8)
    assert valid.reshape(24, 30).tolist() == (trained["x"] > 0).tolist()

    # select -> match on the server, against find_matches on the trace
    h, threshold = trained["lstm"]["h"], float(np.quantile(trained["lstm"]["h"], 0.8))
    answer = get(
        base + f"matches?run=exp1/train&step=1&layer=lstm&key=h&sequence=0&start=4&end=6"
        f"&threshold={threshold}"
    )
    units = kgates.pattern_units(h, 0, 4, 6, threshold)
    assert answer["units"] == units.tolist() and len(units)
    expected = kgates.find_matches(h, trained["x"] > 0, units, threshold, 3, (0, 4, 6))
    assert answer["matches"] == expected and expected
    with pytest.raises(urllib.error.HTTPError) as error:
        get(base + "matches?run=exp1/train&step=1&layer=lstm&key=h&sequence=0&start=9&end=2")
    assert error.value.code == 400


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), (
        "the browser tests need Debian's chromium and chromium-driver (apt-get install "
        "chromium chromium-driver), as .ci/run installs them"
    )
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager downloads nothing
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        "--window-size=1400,1000"
    ).split():
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(driver, script, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def select_and_match(driver, threshold, start, end):
    """Types the threshold, drags across tokens start..end of sequence 0, and reads
    the pattern units and the match list from the page."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.ID, "threshold")
    field.clear()
    field.send_keys(repr(threshold), Keys.TAB)
    tokens = driver.find_elements(By.CSS_SELECTOR, "#tokens .tok")
    ActionChains(driver).drag_and_drop(tokens[start], tokens[end]).perform()
    wait_for(driver, "return document.getElementById('pattern-units')")
    units = driver.find_element(By.ID, "pattern-units").get_attribute("data-units")
    rows = driver.find_elements(By.CSS_SELECTOR, "tr.match")
    found = [
        tuple(int(row.get_attribute(f"data-{k}")) for k in ("sequence", "start", "end"))
        for row in rows
    ]
    return [int(u) for u in units.split(",") if u], found


def python_matches(trained, threshold, start, end):
    c = trained["lstm"]["c"]
    units = kgates.pattern_units(c, 0, start, end, threshold)
    length, selection = end - start + 1, (0, start, end)
    found = kgates.find_matches(c, trained["x"] > 0, units, threshold, length, selection)
    return units.tolist(), [(m["sequence"], m["start"], m["end"]) for m in found]


def test_the_tab_matches_python_and_shows_kgates_memory(board, browser, trained):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(board + "#kgates")
    frame = wait_for(browser, "return document.querySelector('iframe')")
    browser.switch_to.frame(frame)
    wait_for(browser, "return window.kgates && window.kgates.ready")
    assert browser.find_element(By.ID, "pattern-key").get_attribute("value") == "lstm\nc"
    threshold = float(np.quantile(trained["lstm"]["c"], 0.7))
    units, found = select_and_match(browser, threshold, 3, 6)
    assert (units, found) == python_matches(trained, threshold, 3, 6)
    assert units and found

    # memory: click step 12; the focused track's unit, against kgates.memory
    tokens = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")
    ActionChains(browser).click(tokens[12]).perform()
    terms = wait_for(browser, "return document.getElementById('memory-terms')")
    unit = int(terms.get_attribute("data-unit"))
    shown = np.array(json.loads(terms.get_attribute("data-terms")))
    memory = kgates.memory(trained["model"], trained["x"])["lstm"]
    expected = memory.contributions(12)[0, :, unit]
    np.testing.assert_allclose(shown, expected, atol=3e-3 * np.abs(expected).max() + 1e-4)
    assert float(terms.get_attribute("data-span")) == pytest.approx(
        float(memory.span[0, 12, unit]), rel=0.02
    )

    # over training: the slider loads the first record
    browser.execute_script(
        "const s = document.getElementById('epoch'); s.value = 0;"
        "s.dispatchEvent(new Event('change'));"
    )
    wait_for(browser, "return window.kgates.state.step === 0")
    browser.switch_to.default_content()


def test_the_exported_page_does_the_same_offline(browser, trained, tmp_path):
    page = tmp_path / "gates.html"
    assert main(["explore", os.path.dirname(trained["logdir"]), "-o", str(page)]) == 0
    browser.get(page.as_uri())
    wait_for(browser, "return window.kgates && window.kgates.ready")
    threshold = float(np.quantile(trained["lstm"]["c"], 0.6))
    shown = select_and_match(browser, threshold, 10, 12)
    assert shown == python_matches(trained, threshold, 10, 12)
    # nothing was fetched from anywhere but the file itself
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(name.startswith(("file:", "data:", "blob:")) for name in fetched), fetched


@pytest.mark.parametrize("backwards", [False, True])
def test_the_pages_memory_equals_kgates_memory_both_ways(browser, trained, tmp_path, backwards):
    """The front end's memoryAt against kgates.Memory (float64) on random gates with
    padding, for a layer that reads forwards and one that reads backwards."""
    page = tmp_path / "gates.html"
    assert main(["explore", os.path.dirname(trained["logdir"]), "-o", str(page), "--last"]) == 0
    browser.get(page.as_uri())
    wait_for(browser, "return window.kgates && window.kgates.ready")
    rng = np.random.default_rng(3)
    keep, write = rng.random((2, 9, 3)), rng.normal(size=(2, 9, 3))
    valid = np.ones((2, 9), bool)
    valid[1, 6:] = False
    memory = kgates.Memory(keep, write, valid=valid, backwards=backwards)
    for sequence, t, unit in [(0, 8, 0), (1, 4, 2), (0, 0, 1)]:
        terms, span = browser.execute_script(
            "const r = window.kgates.lib.memoryAt(...arguments); return [r.terms, r.span];",
            keep.ravel().tolist(),
            write.ravel().tolist(),
            valid.astype(int).ravel().tolist(),
            9,
            3,
            sequence,
            t,
            unit,
            backwards,
        )
        np.testing.assert_allclose(terms, memory.contributions(t)[sequence, :, unit], atol=1e-12)
        assert span == pytest.approx(float(memory.span[sequence, t, unit]), abs=1e-12)


def test_a_diverged_run_and_a_run_of_other_size_load_cleanly(browser, tmp_path):
    # A model whose gates are NaN (diverged) and runs whose layer differs in size (trials
    # of a search): the page loads each, and what was chosen fits the record shown.
    from kgates.inspect._explorer import explorer_record
    from kgates.inspect._plugin import explorer_html

    x = np.random.default_rng(0).normal(size=(4, 12, 3))
    records = {}
    for run, units in (("diverged", 2), ("wide", 8)):
        model = keras.Sequential([keras.Input((12, 3)), keras.layers.LSTM(units, name="lstm")])
        if run == "diverged":
            kernel = model.layers[0].get_weights()
            kernel[0][0] = np.nan
            model.layers[0].set_weights(kernel)
        records[run] = {0: explorer_record(kgates.trace(model, x), x=x)}
    page = tmp_path / "gates.html"
    page.write_text(explorer_html(records))
    browser.get(page.as_uri())
    wait_for(browser, "return window.kgates && window.kgates.ready")
    browser.execute_script(
        "window.errors = []; addEventListener('error', (e) => errors.push(e.message));"
        "addEventListener('unhandledrejection', (e) => errors.push(String(e.reason)));"
    )
    assert browser.execute_script("return window.kgates.state.run") == "diverged"

    def show(run):
        browser.execute_script(
            "const s = document.getElementById('run'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('change'));",
            run,
        )
        wait_for(browser, f"return window.kgates.state.run === {run!r} && window.kgates.state.meta")

    show("wide")
    browser.execute_script(
        "window.kgates.state.tracks = [0, 5, 7].map((unit) => ({layer: 'lstm', key: 'c', unit}));"
    )
    select_and_match(browser, 0.0, 2, 9)
    show("diverged")
    state = browser.execute_script(
        "const s = window.kgates.state; return [s.tracks, s.selection, s.pattern, errors];"
    )
    tracks, selection, pattern, errors = state
    assert errors == []
    assert tracks == [{"layer": "lstm", "key": "c", "unit": 0}]  # units 5, 7: not here
    assert selection == {"seq": 0, "start": 2, "end": 9} and pattern is None
