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
    --user-data-dir="$(mktemp -d)" --window-size=1400,1050 --virtual-time-budget=40000 \
    --screenshot="docs/$1.png" "http://127.0.0.1:$port/$2" 2>/dev/null
}
shot dashboard-histograms "#histograms&tagFilter=gates%2Flstm%2F(f%7Ci%7Cc)%24"
shot dashboard-images "#images&tagFilter=gradient_flow%7Ccell_state"
shot dashboard-gates "#images&tagFilter=gate_heatmap%2Flstm%7Csaturation_scatter%2Flstm"
shot dashboard-scalars "#scalars&tagFilter=reach%7Cforget_closed%7Csaturation%2Flstm%2Ff"
