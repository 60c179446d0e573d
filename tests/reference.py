"""NumPy float64 reference implementations of the kgates cells.

Written from the LSTM and GRU equations and the documented weight layout
(kernel columns hold the weighted gates in the order i, f, g, o for LSTM and
z, r, g for GRU), independently of Keras. Masked steps carry the state and
output zeros.
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _columns(matrix, names, units):
    return {name: matrix[..., k * units : (k + 1) * units] for k, name in enumerate(names)}


def lstm_reference(
    x,
    weights,
    units,
    *,
    peephole=False,
    pin=None,
    coupled=False,
    input_linear=False,
    output_linear=False,
    gate_recurrence=False,
    recurrent_activation=sigmoid,
    mask=None,
    initial=None,
):
    """Runs an LSTM variant over x (B, T, D) from `initial` = (h0, c0) (zeros if None);
    returns {"h","i","f","g","o","c"} (B, T, u)."""
    pin = pin or {}
    x = np.asarray(x, np.float64)
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    weighted = [g for g in "ifgo" if g not in pin and not (g == "f" and coupled)]
    sig = [g for g in weighted if g != "g"]
    W = _columns(w["kernel"], weighted, units)
    U = _columns(w["recurrent_kernel"], weighted, units)
    b = _columns(w["bias"], weighted, units) if "bias" in w else dict.fromkeys(weighted, 0.0)
    R = _columns(w["gate_recurrent_kernel"], sig, units) if gate_recurrence else None

    B, T, _ = x.shape
    initial = [np.zeros((B, units))] * 2 if initial is None else initial
    h, c = (np.asarray(v, np.float64) for v in initial)
    prev = {g: np.zeros((B, units)) for g in sig}
    out = {k: np.zeros((B, T, units)) for k in ("h", "i", "f", "g", "o", "c")}
    for t in range(T):
        pre = {g: x[:, t] @ W[g] + h @ U[g] + b[g] for g in weighted}
        if gate_recurrence:
            prev_all = np.concatenate([prev[g] for g in sig], axis=-1)
            for g in sig:
                pre[g] = pre[g] + prev_all @ R[g]

        def gate(name, peep, pre=pre):
            if name in pin:
                return np.full((B, units), pin[name])
            z = pre[name] + (w[f"peephole_{name}"] * peep if peephole else 0.0)
            return recurrent_activation(z)

        i = gate("i", c)
        f = 1.0 - i if coupled else gate("f", c)
        g = pre["g"] if input_linear else np.tanh(pre["g"])
        c_new = f * c + i * g
        o = gate("o", c_new)
        h_new = o * (c_new if output_linear else np.tanh(c_new))

        step = {"h": h_new, "i": i, "f": f, "g": g, "o": o, "c": c_new}
        keep = np.ones((B, 1), bool) if mask is None else np.asarray(mask)[:, t, None]
        for k, v in step.items():
            out[k][:, t] = np.where(keep, v, 0.0)
        h = np.where(keep, h_new, h)
        c = np.where(keep, c_new, c)
        prev = {k: np.where(keep, step[k], prev[k]) for k in sig}
    return out


def gru_reference(x, weights, units, *, reset_after=True, pin=None, mask=None, initial=None):
    """Runs a GRU over x (B, T, D) from `initial` = (h0,) (zeros if None); returns
    {"h", "z", "r", "g"}, each (B, T, u)."""
    pin = pin or {}
    x = np.asarray(x, np.float64)
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    weighted = [g for g in "zrg" if g not in pin]
    W = _columns(w["kernel"], weighted, units)
    U = _columns(w["recurrent_kernel"], weighted, units)
    if "bias" not in w:
        b_in = b_rec = dict.fromkeys(weighted, 0.0)
    elif reset_after:
        b_in = _columns(w["bias"][0], weighted, units)
        b_rec = _columns(w["bias"][1], weighted, units)
    else:
        b_in = _columns(w["bias"], weighted, units)
        b_rec = dict.fromkeys(weighted, 0.0)

    B, T, _ = x.shape
    h = np.zeros((B, units)) if initial is None else np.asarray(initial[0], np.float64)
    out = {k: np.zeros((B, T, units)) for k in ("h", "z", "r", "g")}
    for t in range(T):
        xt = x[:, t]

        def gate(name, xt=xt, h=h):
            if name in pin:
                return np.full((B, units), pin[name])
            return sigmoid(xt @ W[name] + b_in[name] + h @ U[name] + b_rec[name])

        z, r = gate("z"), gate("r")
        if reset_after:
            g = np.tanh(xt @ W["g"] + b_in["g"] + r * (h @ U["g"] + b_rec["g"]))
        else:
            g = np.tanh(xt @ W["g"] + b_in["g"] + (r * h) @ U["g"])
        h_new = z * h + (1.0 - z) * g

        keep = np.ones((B, 1), bool) if mask is None else np.asarray(mask)[:, t, None]
        for k, v in {"h": h_new, "z": z, "r": r, "g": g}.items():
            out[k][:, t] = np.where(keep, v, 0.0)
        h = np.where(keep, h_new, h)
    return out


def randomize(layer, rng, scale=0.5):
    """Sets every weight of `layer` to N(0, scale^2) values; returns them by name."""
    values = [rng.normal(0.0, scale, w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(values)
    return {w.path.split("/")[-1]: v for w, v in zip(layer.weights, values)}


def npy(x):
    """A backend tensor (or variable) as a NumPy array."""
    import keras

    return keras.ops.convert_to_numpy(x)
