// kgates gate explorer: the "Gates" tab in TensorBoard, `kgates explore` and
// `kgates.show` all run this one module. Plain JavaScript, no dependencies.
//
// Data: a "source" gives runs(), meta(run, step) and array(run, step, name)
// (an ArrayBuffer: uint8 for "valid", float16 otherwise); the TensorBoard
// plugin serves them over HTTP, an exported page embeds them.

const CELL = 16; // pixels per step
const SIGMOID = new Set(["i", "f", "o", "z", "r"]);

// ---------------------------------------------------------------- data
const HALF = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 31;
    const frac = h & 1023;
    if (exp === 0) table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return table;
})();

export function decodeHalf(buffer) {
  const half = new Uint16Array(buffer);
  const out = new Float32Array(half.length);
  for (let k = 0; k < half.length; k++) out[k] = HALF[half[k]];
  return out;
}

export function pluginSource(base) {
  const get = (path, params) => {
    const url = new URL(path, base);
    for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, v);
    return fetch(url).then((r) => {
      if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
      return r;
    });
  };
  return {
    runs: () => get("runs").then((r) => r.json()),
    meta: (run, step) => get("meta", { run, step }).then((r) => r.json()),
    array: (run, step, name) => get("array", { run, step, name }).then((r) => r.arrayBuffer()),
  };
}

export function embeddedSource(payload) {
  const bytes = (text) => {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let k = 0; k < raw.length; k++) out[k] = raw.charCodeAt(k);
    return out.buffer;
  };
  const record = (run, step) => payload.records[`${run}\n${step}`];
  return {
    runs: async () => payload.runs,
    meta: async (run, step) => record(run, step).meta,
    array: async (run, step, name) => bytes(record(run, step).arrays[name]),
  };
}

// ------------------------------------------------- select -> match (LSTMVis)
// The same definitions as kgates/inspect/_explorer.py (pattern_units, find_matches).
export function patternUnits(values, T, U, seq, start, end, threshold) {
  const units = [];
  for (let u = 0; u < U; u++) {
    let on = true;
    for (let t = start; t <= end && on; t++) on = values[(seq * T + t) * U + u] >= threshold;
    if (on) units.push(u);
  }
  return units;
}

// a number to 3 decimals; "–" for what a diverged model leaves (null, NaN, inf)
const fixed = (v) => (Number.isFinite(v) ? v.toFixed(3) : "–");

export function findMatches(values, valid, N, T, U, units, threshold, length, exclude, limit = 50) {
  const found = [];
  if (!units.length) return found;
  for (let n = 0; n < N; n++) {
    let start = -1;
    let sum = 0;
    for (let t = 0; t <= T; t++) {
      let low = Infinity;
      let on = t < T && valid[n * T + t] === 1;
      if (on) {
        const row = (n * T + t) * U;
        for (let k = 0; k < units.length; k++) {
          const v = values[row + units[k]];
          if (!(v >= threshold)) {
            on = false;
            break;
          }
          if (v < low) low = v;
        }
      }
      if (on) {
        if (start < 0) {
          start = t;
          sum = 0;
        }
        sum += low - threshold;
      } else if (start >= 0) {
        const end = t - 1;
        const overlaps = exclude && n === exclude[0] && start <= exclude[2] && end >= exclude[1];
        if (!overlaps) {
          const len = end - start + 1;
          const margin = Math.floor((sum / len) * 1e6 + 0.5) / 1e6;
          found.push({ sequence: n, start, end, length: len, margin });
        }
        start = -1;
      }
    }
  }
  found.sort(
    (a, b) =>
      Math.abs(a.length - length) - Math.abs(b.length - length) ||
      b.margin - a.margin ||
      a.sequence - b.sequence ||
      a.start - b.start,
  );
  return found.slice(0, limit);
}

// ---------------------------------------------------------------- memory
// What each step wrote that the state at step t still holds (DESIGN.md §8):
// term_s = keep_{s+1} ... keep_t * write_s, in processing order (reversed for a
// backwards layer); padded steps keep everything and write nothing. The span is
// the mean age of those terms, in real steps, weighted by their size.
export function memoryAt(keep, write, valid, T, U, seq, t, unit, backwards) {
  const terms = new Float64Array(T);
  const at = (s) => (seq * T + s) * U + unit;
  const order = [];
  for (let k = 0; k < T; k++) order.push(backwards ? T - 1 - k : k);
  const tp = order.indexOf(t);
  let held = 1;
  let age = 0;
  let total = 0;
  let aged = 0;
  for (let k = tp; k >= 0; k--) {
    const s = order[k];
    const real = valid[seq * T + s] === 1;
    const term = real ? held * write[at(s)] : 0;
    terms[s] = term;
    total += Math.abs(term);
    aged += age * Math.abs(term);
    if (real) {
      held *= keep[at(s)];
      age += 1;
    }
  }
  return { terms, span: total > 0 ? aged / total : 0 };
}

export function benchmark(N = 256, T = 500, U = 256, units = 8) {
  // select -> match over N sequences x T steps x U units (random values)
  const values = new Float32Array(N * T * U);
  let seed = 1;
  for (let k = 0; k < values.length; k++) {
    seed = (seed * 16807) % 2147483647;
    values[k] = seed / 2147483647;
  }
  const valid = new Uint8Array(N * T).fill(1);
  for (let u = 0; u < units; u++) for (let t = 100; t < 104; t++) values[(3 * T + t) * U + u] = 0.99;
  const began = performance.now();
  const pattern = patternUnits(values, T, U, 3, 100, 103, 0.9);
  const matches = findMatches(values, valid, N, T, U, pattern, 0.9, 4, [3, 100, 103]);
  return { ms: performance.now() - began, units: pattern.length, matches: matches.length };
}

// ---------------------------------------------------------------- view
const CSS = `
.kg{font:13px/1.4 Roboto,system-ui,sans-serif;color:#212121;padding:12px 16px}
.kg h3{font-size:14px;margin:16px 0 6px;font-weight:600}
.kg .bar{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
.kg select,.kg input,.kg button{font:inherit}
.kg .hint{color:#666}
.kg .seq{overflow-x:auto;border:1px solid #ddd;padding:4px 0;position:relative}
.kg .row{display:flex;align-items:center;height:18px;white-space:nowrap}
.kg .label{position:sticky;left:0;background:#fff;width:150px;min-width:150px;padding:0 6px;
 overflow:hidden;text-overflow:ellipsis;z-index:1;cursor:pointer}
.kg .label.focus{font-weight:600;color:#e65100}
.kg .tok{display:inline-block;width:${CELL}px;text-align:center;font-family:monospace;
 cursor:pointer;user-select:none;overflow:hidden}
.kg .tok.pad{color:#bbb;background:repeating-linear-gradient(45deg,#f3f3f3 0 3px,#fff 3px 6px)}
.kg .tok.sel{background:#ffe0b2}
.kg .tok.now{outline:2px solid #e65100}
.kg canvas{display:block}
.kg .tip{position:fixed;background:#fff;border:1px solid #999;padding:4px 6px;font-size:12px;white-space:nowrap;
 pointer-events:none;z-index:10;box-shadow:0 1px 4px #0003;display:none}
.kg table{border-collapse:collapse}
.kg td,.kg th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
.kg tr.link{cursor:pointer}.kg tr.link:hover{background:#fff3e0}
.kg .mono{font-family:monospace;white-space:pre}
.kg .hit{background:#ffe0b2}
.kg .q{cursor:pointer;text-decoration:underline dotted;margin-right:8px}
.kg .chip a{text-decoration:none;color:#999}
.kg .chip{display:inline-block;border:1px solid #ccc;border-radius:10px;padding:0 8px;margin:2px}
`;

// whitespace made visible in the token rows
const shownToken = (text) => ({ " ": "␣", "\n": "↵", "\t": "⇥" })[text] ?? text;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function colour(value, key, scale) {
  if (!Number.isFinite(value)) return "#000";
  if (SIGMOID.has(key)) {
    // viridis, coarsely
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const x = Math.min(Math.max(value, 0), 1) * (stops.length - 1);
    const k = Math.min(Math.floor(x), stops.length - 2);
    const a = stops[k];
    const b = stops[k + 1];
    const w = x - k;
    return `rgb(${a.map((c, j) => Math.round(c + (b[j] - c) * w)).join(",")})`;
  }
  const w = Math.min(Math.abs(value) / (scale || 1), 1);
  const fade = Math.round(255 * (1 - w));
  return value >= 0 ? `rgb(255,${fade},${fade})` : `rgb(${fade},${fade},255)`;
}

export async function mount(root, source) {
  const style = document.createElement("style");
  style.textContent = CSS;
  document.head.append(style);
  const app = el("div", { class: "kg" });
  root.append(app);
  const tip = el("div", { class: "tip" });
  app.append(tip);

  const state = {
    runs: await source.runs(),
    run: null,
    step: null,
    meta: null,
    arrays: new Map(),
    seq: 0,
    tracks: [],
    focus: 0,
    selection: null,
    now: null,
    pattern: null,
    result: null,
  };
  // the page's state and its pure functions, for notebooks, debugging and tests
  const explorer = { state, source, lib: { decodeHalf, patternUnits, findMatches, memoryAt } };
  window.kgates = explorer;

  const runNames = Object.keys(state.runs).sort();
  if (!runNames.length) {
    app.append(
      el(
        "p",
        {},
        "No explorer data yet. kgates.TensorBoard(..., explorer_freq=N) writes it every N " +
          "dashboards; `kgates inspect` writes it for a saved model.",
      ),
    );
    return explorer;
  }
  const layerOf = (name) => state.meta.layers.find((l) => l.name === name);
  async function values(name) {
    if (!state.arrays.has(name)) {
      const buffer = await source.array(state.run, state.step, name);
      state.arrays.set(name, name === "valid" ? new Uint8Array(buffer) : decodeHalf(buffer));
    }
    return state.arrays.get(name);
  }
  const scales = new Map(); // largest |value| of each array, for the colours
  function scaleOf(name, data) {
    const key = `${state.run}\n${state.step}\n${name}`;
    if (!scales.has(key)) {
      let m = 0;
      for (let k = 0; k < data.length; k++) if (Math.abs(data[k]) > m) m = Math.abs(data[k]);
      scales.set(key, m);
    }
    return scales.get(key);
  }

  // ---- controls
  const runSelect = el("select", { id: "run" });
  for (const r of runNames) runSelect.append(el("option", { value: r }, r));
  const slider = el("input", { id: "epoch", type: "range", min: 0, value: 0, step: 1 });
  const epochLabel = el("span", { id: "epoch-label" });
  const seqInput = el("input", { id: "sequence", type: "number", min: 0, value: 0, style: "width:5em" });
  const layerSelect = el("select", { id: "track-layer" });
  const keySelect = el("select", { id: "track-key" });
  const unitInput = el("input", { id: "track-unit", type: "number", min: 0, value: 0, style: "width:5em" });
  const addButton = el("button", { id: "track-add" }, "+ track");
  const chips = el("span", { id: "tracks" });
  app.append(
    el("div", { class: "bar" }, "Run ", runSelect, " Epoch ", slider, epochLabel, " Sequence ", seqInput),
    el("div", { class: "bar" }, "Show ", layerSelect, keySelect, " unit ", unitInput, addButton, chips),
  );
  const seqView = el("div", { class: "seq", id: "sequence-view" });
  const otherSteps = el("div", { class: "hint", id: "other-steps" });
  app.append(
    el("section", { id: "view-sequence" },
      el("h3", {}, "Sequence"),
      el("div", { class: "hint" }, "Drag across the tokens to select steps; click a step for its memory; hover for every gate."),
      otherSteps,
      seqView),
  );

  const patternSelect = el("select", { id: "pattern-key" });
  const threshold = el("input", { id: "threshold", type: "number", step: "0.01", value: "0.5", style: "width:6em" });
  const matchButton = el("button", { id: "match" }, "Match");
  const quantiles = el("div", { id: "quantiles", class: "hint" });
  const selectionInfo = el("div", { id: "selection" }, "No selection.");
  const matchView = el("div", { id: "matches" });
  app.append(
    el("section", { id: "view-match" },
      el("h3", {}, "Select → match"),
      el("div", { class: "bar" }, "Units on: ", patternSelect, " value ≥ ", threshold, matchButton),
      quantiles,
      selectionInfo,
      matchView),
  );
  const memoryView = el("div", { id: "memory" }, el("span", { class: "hint" }, "Click a step of the sequence."));
  app.append(el("section", { id: "view-memory" }, el("h3", {}, "Memory"), memoryView));
  const unitsView = el("div", { id: "units" });
  app.append(el("section", { id: "view-units" }, el("h3", {}, "Units"), unitsView));

  // ---- loading a record
  async function load(run, step) {
    state.run = run;
    state.step = step;
    state.meta = await source.meta(run, step);
    state.arrays = new Map();
    const meta = state.meta;
    layerSelect.replaceChildren(...meta.layers.map((l) => el("option", { value: l.name }, l.name)));
    const other = meta.other_steps || [];  // records written before it have none
    otherSteps.textContent = other.length
      ? `Not shown: ${other.join(", ")}, stepping along another sequence than ${meta.layers[0].name} (pass layers= to show them).`
      : "";
    patternSelect.replaceChildren(
      ...meta.layers.flatMap((l) => l.keys.map((k) => el("option", { value: `${l.name}\n${k}` }, `${l.name} ${k}`))),
    );
    // what was chosen on another record stays where this one has it (a trial of
    // another size, another run's layers): tracks, the selection, the pattern, the step
    const has = (t) => layerOf(t.layer)?.keys.includes(t.key) && t.unit < layerOf(t.layer).units;
    const known = state.tracks.filter(has);
    state.tracks = known.length ? known : await defaultTracks();
    state.focus = Math.min(state.focus, state.tracks.length - 1);
    const sel = state.selection;
    if (sel && (sel.seq >= meta.sequences || sel.end >= meta.steps)) state.selection = null;
    if (state.now !== null && state.now >= meta.steps) state.now = null;
    state.pattern = null; // found again by Match, on this record
    const chosen = [...patternSelect.options].some((o) => o.value === patternSelect.dataset.value);
    if (chosen) patternSelect.value = patternSelect.dataset.value;
    else {
      const first = meta.layers[0];
      const key = first.keys.includes("c") ? "c" : "h";
      patternSelect.value = `${first.name}\n${key}`;
    }
    state.seq = Math.min(state.seq, meta.sequences - 1);
    seqInput.max = meta.sequences - 1;
    keysFor();
    showQuantiles();
    renderUnits();
    state.result = null;
    matchView.replaceChildren();
    await renderSequence();
  }

  async function defaultTracks() {
    const layer = state.meta.layers[0];
    const key = layer.keys.includes("c") ? "c" : "h";
    const data = await values(`${layer.name}/${key}`);
    const valid = await values("valid");
    const { sequences: N, steps: T } = state.meta;
    const U = layer.units;
    const spread = new Float64Array(U);
    for (let n = 0; n < N; n++)
      for (let t = 0; t < T; t++) {
        if (!valid[n * T + t]) continue;
        for (let u = 0; u < U; u++) spread[u] += Math.abs(data[(n * T + t) * U + u]);
      }
    const ranked = [...spread.keys()].sort((a, b) => spread[b] - spread[a]).slice(0, 4);
    return ranked.map((unit) => ({ layer: layer.name, key, unit }));
  }

  function keysFor() {
    const layer = layerOf(layerSelect.value);
    keySelect.replaceChildren(...layer.keys.map((k) => el("option", { value: k }, k)));
    unitInput.max = layer.units - 1;
  }

  function showQuantiles() {
    const [name, key] = patternSelect.value.split("\n");
    const per = layerOf(name).quantiles[key];
    const levels = state.meta.quantile_levels;
    const median = (j) => {  // over the units with finite values (null: none has)
      const col = per.map((q) => q[j]).filter(Number.isFinite).sort((a, b) => a - b);
      return col.length ? col[Math.floor(col.length / 2)] : null;
    };
    if (!threshold.dataset.chosen && median(2) !== null) threshold.value = median(2).toFixed(3); // q90
    quantiles.replaceChildren(`Per-unit quantiles of ${name} ${key} (median over units; click to use): `);
    levels.forEach((level, j) => {
      const v = median(j);
      if (v === null) return;
      quantiles.append(
        el("span", { class: "q", onclick: () => { threshold.value = v; threshold.dataset.chosen = "1"; runMatch(); } }, `q${Math.round(level * 100)} ${v.toFixed(3)}`),
      );
    });
    if (state.selection) {
      const units = state.pattern || [];
      const info = units.slice(0, 12).map((u) => `unit ${u}: q90 ${fixed(per[u]?.[2])}`);
      if (info.length) quantiles.append(el("div", {}, "Pattern units — ", info.join(", ")));
    }
  }

  // ---- the sequence view
  async function renderSequence() {
    const { steps: T, sequences: N } = state.meta;
    const n = state.seq;
    const valid = await values("valid");
    const rows = [];
    const tokens = el("div", { class: "row", id: "tokens" }, el("span", { class: "label" }, `sequence ${n} of ${N}`));
    for (let t = 0; t < T; t++) {
      const real = valid[n * T + t] === 1;
      const text = state.meta.tokens ? state.meta.tokens[n][t] ?? "" : t % 10 === 0 ? String(t) : "·";
      const shown = shownToken(text);
      const cls = ["tok"];
      if (!real) cls.push("pad");
      const sel = state.selection;
      if (sel && sel.seq === n && t >= sel.start && t <= sel.end) cls.push("sel");
      if (state.now === t) cls.push("now");
      tokens.append(el("span", { class: cls.join(" "), "data-step": t, title: real ? `step ${t}: ${JSON.stringify(text)}` : `step ${t}: padding` }, real ? shown : ""));
    }
    rows.push(tokens);
    if (!state.meta.tokens && state.meta.features) {
      const inputs = await values("inputs");
      const F = state.meta.features;
      const canvas = el("canvas", { width: T * CELL, height: 40 });
      const ctx = canvas.getContext("2d");
      let lo = Infinity;
      let hi = -Infinity;
      for (let t = 0; t < T; t++)
        for (let f = 0; f < F; f++) {
          const v = inputs[(n * T + t) * F + f];
          if (valid[n * T + t]) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
        }
      const y = (v) => 36 - ((v - lo) / (hi - lo || 1)) * 32;
      for (let f = 0; f < F; f++) {
        ctx.strokeStyle = `hsl(${(f * 67) % 360},60%,45%)`;
        ctx.beginPath();
        for (let t = 0; t < T; t++) {
          if (!valid[n * T + t]) continue;
          ctx.lineTo(t * CELL + CELL / 2, y(inputs[(n * T + t) * F + f]));
        }
        ctx.stroke();
      }
      rows.push(el("div", { class: "row", style: "height:42px" }, el("span", { class: "label" }, "inputs"), canvas));
    }
    for (const [index, track] of state.tracks.entries()) {
      const layer = layerOf(track.layer);
      const name = `${track.layer}/${track.key}`;
      const data = await values(name);
      const scale = scaleOf(name, data);
      const canvas = el("canvas", { width: T * CELL, height: 16 });
      const ctx = canvas.getContext("2d");
      for (let t = 0; t < T; t++) {
        if (!valid[n * T + t]) {
          ctx.fillStyle = "#eee";
        } else {
          ctx.fillStyle = colour(data[(n * T + t) * layer.units + track.unit], track.key, scale);
        }
        ctx.fillRect(t * CELL, 1, CELL, 14);
      }
      const label = el(
        "span",
        {
          class: index === state.focus ? "label focus" : "label",
          title: "click: show this unit's memory",
          onclick: () => { state.focus = index; renderSequence(); },
        },
        `${track.layer} ${track.key}[${track.unit}]`,
      );
      rows.push(el("div", { class: "row track", "data-track": `${track.layer}/${track.key}/${track.unit}` }, label, canvas));
    }
    seqView.replaceChildren(...rows);
    const remove = (index) => () => {
      state.tracks.splice(index, 1);
      state.focus = Math.max(0, Math.min(state.focus, state.tracks.length - 1));
      renderSequence();
    };
    chips.replaceChildren(
      ...state.tracks.map((t, index) =>
        el("span", { class: "chip" }, `${t.layer} ${t.key}[${t.unit}] `,
          el("a", { href: "#", class: "remove", title: "remove this track", onclick: (e) => { e.preventDefault(); remove(index)(); } }, "×"))),
    );
    if (state.now !== null) await renderMemory();
  }

  function stepAt(event) {
    const target = event.target.closest ? event.target.closest("[data-step]") : null;
    if (target) return Number(target.dataset.step);
    const canvas = event.target.tagName === "CANVAS" ? event.target : null;
    if (!canvas) return null;
    const t = Math.floor(event.offsetX / CELL);
    return t >= 0 && t < state.meta.steps ? t : null;
  }

  let dragFrom = null;
  seqView.addEventListener("mousedown", (event) => {
    const t = stepAt(event);
    if (t !== null && event.target.dataset.step !== undefined) {
      dragFrom = t;
      event.preventDefault();
    }
  });
  window.addEventListener("mouseup", async (event) => {
    if (dragFrom === null) return;
    const t = stepAt(event);
    const from = dragFrom;
    dragFrom = null;
    if (t === null || t === from) {
      state.now = t === null ? from : t;
      await renderSequence();
      return;
    }
    state.selection = { seq: state.seq, start: Math.min(from, t), end: Math.max(from, t) };
    await runMatch();
  });
  seqView.addEventListener("mousemove", async (event) => {
    const t = stepAt(event);
    if (t === null) { tip.style.display = "none"; return; }
    const n = state.seq;
    const T = state.meta.steps;
    const valid = await values("valid");
    const lines = [`step ${t}${state.meta.tokens ? ` ${JSON.stringify(state.meta.tokens[n][t] ?? "")}` : ""}`];
    if (!valid[n * T + t]) lines.push("padding");
    else {
      const seen = new Set();
      for (const track of state.tracks) {
        const id = `${track.layer}/${track.unit}`;
        if (seen.has(id)) continue;
        seen.add(id);
        const layer = layerOf(track.layer);
        const parts = [];
        for (const key of layer.keys) {
          const data = await values(`${track.layer}/${key}`);
          parts.push(`${key} ${data[(n * T + t) * layer.units + track.unit].toFixed(3)}`);
        }
        lines.push(`${track.layer}[${track.unit}]: ${parts.join("  ")}`);
      }
    }
    tip.replaceChildren(...lines.map((line) => el("div", {}, line)));
    tip.style.display = "block";
    tip.style.left = `${event.clientX + 14}px`;
    tip.style.top = `${event.clientY + 14}px`;
  });
  seqView.addEventListener("mouseleave", () => { tip.style.display = "none"; });

  // ---- select -> match
  function tokenText(n, start, end) {
    const tokens = state.meta.tokens;
    if (!tokens) return `steps ${start}–${end}`;
    const valid = state.arrays.get("valid");
    const show = (t) => (valid[n * state.meta.steps + t] ? shownToken(tokens[n][t]) : "");
    const before = [];
    const inside = [];
    const after = [];
    for (let t = Math.max(0, start - 5); t < start; t++) before.push(show(t));
    for (let t = start; t <= end; t++) inside.push(show(t));
    for (let t = end + 1; t <= Math.min(state.meta.steps - 1, end + 5); t++) after.push(show(t));
    return el("span", { class: "mono" }, before.join("").padStart(5 * (tokens[n][0]?.length || 1)), el("span", { class: "hit" }, inside.join("")), after.join(""));
  }

  async function runMatch() {
    const began = performance.now();
    const sel = state.selection;
    showQuantiles();
    if (!sel) return;
    const [name, key] = patternSelect.value.split("\n");
    const layer = layerOf(name);
    const data = await values(`${name}/${key}`);
    const valid = await values("valid");
    const { sequences: N, steps: T } = state.meta;
    const theta = Number(threshold.value);
    const computing = performance.now();
    const units = patternUnits(data, T, layer.units, sel.seq, sel.start, sel.end, theta);
    const length = sel.end - sel.start + 1;
    const found = findMatches(data, valid, N, T, layer.units, units, theta, length, [sel.seq, sel.start, sel.end]);
    state.pattern = units;
    state.result = { units, matches: found, ms: performance.now() - computing };
    showQuantiles();
    selectionInfo.replaceChildren(
      `Selected: sequence ${sel.seq}, steps ${sel.start}–${sel.end} (${length}). `,
      el("span", { id: "pattern-units", "data-units": units.join(",") },
        units.length
          ? `${units.length} unit${units.length > 1 ? "s" : ""} of ${name} ${key} ≥ ${theta} throughout: ${units.slice(0, 30).join(", ")}${units.length > 30 ? ", …" : ""}`
          : `No unit of ${name} ${key} is ≥ ${theta} at every selected step; lower the threshold.`),
    );
    const rows = found.map((m, rank) =>
      el(
        "tr",
        {
          class: "link match",
          "data-sequence": m.sequence,
          "data-start": m.start,
          "data-end": m.end,
          onclick: async () => {
            state.seq = m.sequence;
            seqInput.value = m.sequence;
            state.selection = { seq: m.sequence, start: m.start, end: m.end };
            await renderSequence();
          },
        },
        el("td", {}, String(rank + 1)),
        el("td", {}, String(m.sequence)),
        el("td", {}, `${m.start}–${m.end}`),
        el("td", {}, String(m.length)),
        el("td", {}, m.margin.toFixed(3)),
        el("td", {}, tokenText(m.sequence, m.start, m.end)),
      ),
    );
    matchView.replaceChildren(
      el("div", { class: "hint" }, `${found.length} match${found.length === 1 ? "" : "es"} (runs where every pattern unit is on), closest length first; ${state.result.ms.toFixed(1)} ms.`),
      el("table", {}, el("tr", {}, ...["#", "sequence", "steps", "length", "margin", "tokens"].map((h) => el("th", {}, h))), ...rows),
    );
    await renderSequence();
    state.result.total_ms = performance.now() - began; // selection to everything drawn
  }

  // ---- memory
  async function renderMemory() {
    const track = state.tracks[state.focus];
    const t = state.now;
    if (!track) return;
    const layer = layerOf(track.layer);
    if (!layer.memory) {
      memoryView.replaceChildren(`${track.layer} has no memory to take apart (a SimpleRNN's state is not a sum of writes).`);
      return;
    }
    const { steps: T } = state.meta;
    const valid = await values("valid");
    const n = state.seq;
    if (!valid[n * T + t]) {
      memoryView.replaceChildren(`Step ${t} is padding.`);
      return;
    }
    let keep;
    let write;
    const U = layer.units;
    if (layer.memory === "lstm") {
      keep = await values(`${track.layer}/f`);
      const i = await values(`${track.layer}/i`);
      const g = await values(`${track.layer}/g`);
      write = new Float32Array(i.length);
      for (let k = 0; k < i.length; k++) write[k] = i[k] * g[k];
    } else {
      keep = await values(`${track.layer}/z`);
      const g = await values(`${track.layer}/g`);
      write = new Float32Array(g.length);
      for (let k = 0; k < g.length; k++) write[k] = (1 - keep[k]) * g[k];
    }
    const { terms, span } = memoryAt(keep, write, valid, T, U, n, t, track.unit, layer.backwards);
    let big = 0;
    for (const v of terms) big = Math.max(big, Math.abs(v));
    const canvas = el("canvas", { width: T * CELL, height: 40 });
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#999";
    ctx.fillRect(0, 20, T * CELL, 1);
    for (let s = 0; s < T; s++) {
      if (!terms[s]) continue;
      const h = (Math.abs(terms[s]) / (big || 1)) * 19;
      ctx.fillStyle = terms[s] > 0 ? "#d32f2f" : "#1976d2";
      ctx.fillRect(s * CELL + 2, terms[s] > 0 ? 20 - h : 21, CELL - 4, h);
    }
    const state_ = layer.memory === "lstm" ? "c" : "h";
    const cells = el("div", { id: "memory-terms", "data-step": t, "data-unit": track.unit, "data-layer": track.layer, "data-terms": JSON.stringify(Array.from(terms)), "data-span": span });
    memoryView.replaceChildren(
      el("div", {}, `What ${track.layer} ${state_}[${track.unit}] holds at step ${t}, by the step that wrote it (red: positive, blue: negative); memory span ${span.toFixed(2)} steps.`),
      el("div", { class: "seq" },
        el("div", { class: "row" }, el("span", { class: "label" }, "tokens"),
          ...Array.from({ length: T }, (_, s) => el("span", { class: s === t ? "tok now" : "tok" }, valid[n * T + s] ? (state.meta.tokens ? shownToken(state.meta.tokens[n][s]) : s % 10 === 0 ? String(s) : "·") : ""))),
        el("div", { class: "row", style: "height:42px" }, el("span", { class: "label" }, `written → ${state_}_${t}`), canvas)),
      cells,
    );
  }

  // ---- units table
  function renderUnits() {
    const rows = state.meta.units_table || [];
    if (!rows.length) {
      unitsView.replaceChildren(el("span", { class: "hint" }, "No annotations: pass annotations= to kgates.TensorBoard or kgates.show to rank units against them."));
      return;
    }
    unitsView.replaceChildren(
      el("table", {},
        el("tr", {}, ...["annotation", "unit", "r", "probe", "chance"].map((h) => el("th", {}, h))),
        ...rows.map((row) =>
          el("tr", {
            class: "link unit-row",
            "data-layer": row.layer, "data-key": row.key, "data-unit": row.unit,
            onclick: async () => {
              if (!layerOf(row.layer) || row.unit >= layerOf(row.layer).units) return;
              state.tracks.unshift({ layer: row.layer, key: row.key, unit: row.unit });
              state.focus = 0;
              await renderSequence();
            },
          },
          el("td", {}, `${row.annotation} (${row.kind})`),
          el("td", {}, `${row.layer} ${row.key}[${row.unit}]`),
          el("td", {}, fixed(row.r)),
          el("td", {}, fixed(row.probe)),
          el("td", {}, fixed(row.chance))))));
  }

  // ---- wiring
  async function chooseRun() {
    const steps = state.runs[runSelect.value];
    slider.max = steps.length - 1;
    slider.value = steps.length - 1;
    epochLabel.textContent = `step ${steps[steps.length - 1]} (${steps.length} recorded)`;
    await load(runSelect.value, steps[steps.length - 1]);
  }
  runSelect.addEventListener("change", chooseRun);
  slider.addEventListener("change", async () => {
    const steps = state.runs[state.run];
    const step = steps[Number(slider.value)];
    epochLabel.textContent = `step ${step} (${steps.length} recorded)`;
    await load(state.run, step);
  });
  seqInput.addEventListener("change", async () => {
    state.seq = Math.max(0, Math.min(Number(seqInput.value) || 0, state.meta.sequences - 1));
    state.now = null;
    memoryView.replaceChildren();
    await renderSequence();
  });
  layerSelect.addEventListener("change", keysFor);
  addButton.addEventListener("click", async () => {
    const layer = layerOf(layerSelect.value);
    const unit = Math.max(0, Math.min(Number(unitInput.value) || 0, layer.units - 1));
    state.tracks.push({ layer: layer.name, key: keySelect.value, unit });
    await renderSequence();
  });
  patternSelect.addEventListener("change", () => { patternSelect.dataset.value = patternSelect.value; runMatch(); });
  threshold.addEventListener("change", () => { threshold.dataset.chosen = "1"; runMatch(); });
  matchButton.addEventListener("click", runMatch);
  await chooseRun();
  explorer.ready = true;
  return explorer;
}

export async function render() {
  // TensorBoard's entry point for the plugin's iframe
  await mount(document.body, pluginSource(new URL("./", import.meta.url)));
}
