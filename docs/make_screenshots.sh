#!/usr/bin/env bash
# Renders the README's dashboard screenshots: TensorBoard in headless Chromium
# (Debian's `chromium` package) over the run that experiments/gate_dashboards.py
# writes. Run from the repository root with the project installed.
set -euo pipefail
logdir=${1:-runs/gate_dashboards}
port=${PORT:-6123}
[ -d "$logdir" ] || python experiments/gate_dashboards.py --logdir "$logdir"
kgates board "$logdir" --port "$port" &
board=$!
trap 'kill $board' EXIT
sleep 15  # TensorBoard reads the event files in the background

shot() {  # shot NAME URL-FRAGMENT
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" --window-size=1400,1050 --virtual-time-budget=20000 \
    --screenshot="docs/$1.png" "http://127.0.0.1:$port/$2" 2>/dev/null
}
shot dashboard-saturation "?tagFilter=saturation%2Flstm%2F#timeseries"
shot dashboard-histograms "?tagFilter=gates%2Flstm#timeseries"
shot dashboard-cell-state "?tagFilter=cell_state%7Ccell_trace#timeseries"
shot dashboard-gradient-flow "?tagFilter=gradient_flow%2F#timeseries"
shot dashboard-saturation-scatter "?tagFilter=saturation_scatter#timeseries"
