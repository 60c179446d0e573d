"""Renders the README's screenshots of the Gates tab: an LSTM learns the `code`
task (next character of the standard library's source) with kgates.TensorBoard
(tokens and the code's annotations), `kgates board` serves the run, and headless
Chromium (Debian's `chromium` and `chromium-driver`) drives the tab as the
browser tests do. Run from the repository root with the project installed
(about 2 minutes on 2 CPU cores):

    python docs/make_explorer_screenshots.py [--logdir runs/explorer]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

import kgates
from kgates.study._code import VOCABULARY, decode_text

RUN_CLI = "import sys, kgates_cli; sys.exit(kgates_cli.main())"


def train(logdir: str) -> None:
    keras.utils.set_random_seed(0)
    task = kgates.make_task("code", samples=2000, length=80)
    _, notes = kgates.code_annotations(2000, 80)
    model = keras.Sequential(
        [
            keras.Input((80,), dtype="int32"),
            keras.layers.Embedding(VOCABULARY, 32),
            keras.layers.LSTM(64, return_sequences=True, name="lstm"),
            keras.layers.Dense(VOCABULARY),
        ]
    )
    model.compile(
        keras.optimizers.Adam(3e-3, clipnorm=1.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # the probe: validation windows of which a fifth to a half is inside strings
    share = notes["in_string"].mean(axis=1)
    probe = np.flatnonzero((share > 0.2) & (share < 0.5))[:64]
    callback = kgates.TensorBoard(
        logdir,
        probe=(task.x_val[probe], task.y_val[probe]),
        probe_text=decode_text,
        annotations={k: notes[k][probe] for k in ("in_string", "depth", "indent")},
        explorer_freq=2,
        image_freq=0,
    )
    model.fit(task.x_train, task.y_train, epochs=6, batch_size=64, verbose=2, callbacks=[callback])


def shoot(logdir: str, out: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    board = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "board", os.path.dirname(logdir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = next(line for line in board.stdout if " at http" in line).split(" at ")[1].split()[0]
        time.sleep(8)  # TensorBoard reads the event files in the background
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        flags = (
            "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
            "--disable-background-networking --disable-component-update --disable-sync "
            "--hide-scrollbars --window-size=1400,1000"
        )
        for flag in flags.split():
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tempfile.mkdtemp()}")
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(url + "#kgates")
            time.sleep(4)
            driver.save_screenshot(os.path.join(out, "explorer-tab.png"))
            driver.switch_to.frame(driver.find_element(By.TAG_NAME, "iframe"))
            for _ in range(100):
                if driver.execute_script("return window.kgates && window.kgates.ready"):
                    break
                time.sleep(0.2)
            for row in driver.find_elements(By.CSS_SELECTOR, "tr.unit-row")[:2][::-1]:
                row.click()  # the best in_string unit, then the next, as tracks
                time.sleep(0.5)
            tokens = driver.find_elements(By.CSS_SELECTOR, "#tokens .tok")
            text = "".join(t.text or " " for t in tokens)
            quote = max(min(i for i in (text.find("'"), text.find('"')) if i >= 0), 0)
            ActionChains(driver).drag_and_drop(tokens[quote + 1], tokens[quote + 4]).perform()
            time.sleep(1)
            tokens = driver.find_elements(By.CSS_SELECTOR, "#tokens .tok")
            ActionChains(driver).click(tokens[quote + 6]).perform()
            time.sleep(1)
            tokens = driver.find_elements(By.CSS_SELECTOR, "#tokens .tok")
            ActionChains(driver).move_to_element(tokens[quote + 3]).perform()
            time.sleep(0.5)
            for view in ("sequence", "match", "memory", "units"):
                driver.find_element(By.ID, f"view-{view}").screenshot(
                    os.path.join(out, f"explorer-{view}.png")
                )
                driver.execute_script("document.querySelector('.tip').style.display = 'none'")
        finally:
            driver.quit()
    finally:
        board.terminate()
        board.wait()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="runs/explorer/code")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.logdir):
        train(args.logdir)
    shoot(args.logdir, args.out)
    print("Wrote", ", ".join(f"{args.out}/explorer-{v}.png" for v in ("tab", "sequence")), "...")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
