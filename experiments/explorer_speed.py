"""Is the Gates tab's select -> match fast on a large probe?

An explorer page (the one `kgates explore` writes) holding one layer of
`--sequences` x `--steps` x `--units` float16 values (default 256 x 500 x 256,
random with a planted pattern), opened in headless Chromium (Debian's
`chromium`, `chromium-driver`). A real mouse drag selects steps; the page times
the selection to the match list and sequence view drawn (`total_ms`), and the
search alone (`search_ms`). Repeated `--repeats` times; medians printed.

    python experiments/explorer_speed.py --json experiments/results/explorer_speed.json
    python experiments/explorer_speed.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

from kgates.inspect._explorer import explorer_record
from kgates.inspect._plugin import explorer_html


def page(sequences: int, steps: int, units: int, path: str) -> None:
    rng = np.random.default_rng(0)
    values = rng.random((sequences, steps, units), dtype=np.float32)
    values[:, 40:44, :8] = 0.99  # a pattern: 8 units on at steps 40-43 of every sequence
    traced = {"rnn": {"h": np.ma.masked_array(values)}}
    meta, arrays = explorer_record(traced, sequences=sequences, steps=steps, units=units)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(explorer_html({"speed": {0: (meta, arrays)}}))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="a small page, for tests")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sequences, args.steps, args.units, args.repeats = 8, 60, 16, 2

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "speed.html")
        page(args.sequences, args.steps, args.units, path)
        size_mb = os.path.getsize(path) / 2**20
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        flags = (
            "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
            "--disable-background-networking --disable-component-update --disable-sync "
            "--window-size=1400,1000"
        )
        for flag in flags.split():
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={os.path.join(tmp, 'chromium')}")
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            began = time.perf_counter()
            driver.get("file://" + path)
            while not driver.execute_script("return window.kgates && window.kgates.ready"):
                time.sleep(0.05)
            load_s = time.perf_counter() - began
            field = driver.find_element(By.ID, "threshold")
            field.clear()
            field.send_keys("0.9", Keys.TAB)
            totals, searches, found = [], [], None
            for k in range(args.repeats):
                driver.execute_script("window.kgates.state.result = null")
                tokens = driver.find_elements(By.CSS_SELECTOR, "#tokens .tok")
                end = 42 + k % 2  # alternate, so that every drag is a new selection
                ActionChains(driver).drag_and_drop(tokens[40], tokens[end]).perform()
                while not driver.execute_script(
                    "return window.kgates.state.result && window.kgates.state.result.total_ms"
                ):
                    time.sleep(0.02)
                result = driver.execute_script("return window.kgates.state.result")
                totals.append(result["total_ms"])
                searches.append(result["ms"])
                found = (len(result["units"]), len(result["matches"]))
        finally:
            driver.quit()
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "size": {"sequences": args.sequences, "steps": args.steps, "units": args.units},
        "page_mb": round(size_mb, 1),
        "load_s": round(load_s, 2),
        "repeats": args.repeats,
        "select_to_drawn_ms_median": float(np.median(totals)),
        "search_ms_median": float(np.median(searches)),
        "pattern_units_and_matches": found,
    }
    print(
        f"{args.sequences} sequences x {args.steps} steps x {args.units} units "
        f"({size_mb:.0f} MB page, loaded in {load_s:.1f} s): select -> match "
        f"{out['select_to_drawn_ms_median']:.0f} ms to drawn (search "
        f"{out['search_ms_median']:.0f} ms), median of {args.repeats}; "
        f"pattern {found[0]} units, {found[1]} matches"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=2)
    return out


if __name__ == "__main__":
    main()
