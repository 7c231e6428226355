// The page of `lstmgen export --format web`: the exported model generates in the browser with
// onnxruntime-web (WebAssembly), no server behind it. Tokenisation and the logit filters are
// lstmgen's (tokens/chars.py, tokens/words.py, sampling/sampler.py), so greedy text (temperature
// 0) is the text `lstmgen generate --temperature 0` makes. Seeded sampling draws from this
// page's own generator (mulberry32), so a seed gives the same text here every time, but not
// the text Python makes with that seed.
"use strict";

const GREEDY_BELOW = 1e-3; // as config/sampling.py: below it sampling is the argmax
const RESERVED = /[\u{100000}-\u{10FFFF}]/gu; // marks of a conditioned store, never text
const W = "[\\p{L}\\p{N}_]"; // Python's \w on str
// words.py's TOKEN_PATTERN with Python's Unicode classes spelled out
const WORD_TOKEN = new RegExp(
  ` ?(?:\\p{Nd}+(?:[.,:]\\p{Nd}+)+|${W}+(?:['’.\\-]${W}+)*|([^\\p{L}\\p{N}_\\s])\\1*)` +
    "|\\n|[^\\S\\n]+(?!\\S)|[^\\S\\n]+",
  "gu",
);
const WORD_START = new RegExp(`^${W}`, "u");

const MAX_LENGTH = 4000; // tokens a generation may ask for: `lstmgen serve --max-tokens` default
const meta = window.LSTMGEN_MODEL;
const $ = (id) => document.getElementById(id);
let session = null;
let stopping = false;

// ---- the manifest (model.js), checked before anything reads it ---------------------------
function manifestProblem(m) {
  // what is wrong with a damaged model.js (wrong types, absurd sizes), or null
  const whole = (x, low = 0) => Number.isInteger(x) && x >= low;
  const texts = (x) => Array.isArray(x) && x.every((t) => typeof t === "string");
  const ids = (x) => Array.isArray(x) && x.every((id) => whole(id) && id < m.vocab_size);
  const said = (x) => JSON.stringify(x)?.slice(0, 40);
  if (m === null || typeof m !== "object" || Array.isArray(m)) return "it defines no model";
  if (!["char", "word", "bpe"].includes(m.level)) return `level ${said(m.level)}`;
  if (!["lstm", "gru"].includes(m.cell)) return `cell ${said(m.cell)}`;
  for (const key of ["layers", "hidden", "vocab_size"]) {
    if (!whole(m[key], 1)) return `${key} ${said(m[key])}`;
  }
  if (!whole(m.unknown_id)) return `unknown_id ${said(m.unknown_id)}`;
  if (!ids(m.start_ids) || !m.start_ids.length) return "start_ids is not a list of token ids";
  if (!ids(m.banned)) return "banned is not a list of token ids";
  const table = m.level === "bpe" ? "token_bytes" : "tokens";
  if (!texts(m[table]) || m[table].length !== m.vocab_size) {
    return `${table} is not a list of ${said(m.vocab_size)} strings`;
  }
  const bits = m.held_out_bits_per_char;
  if (bits != null && typeof bits !== "number") return `held_out_bits_per_char ${said(bits)}`;
  if (typeof m.quantize !== "string") return `quantize ${said(m.quantize)}`;
  const s = m.sampling;
  if (s === null || typeof s !== "object") return "it has no sampling settings";
  if (typeof s.temperature !== "number" || !(s.temperature >= 0)) {
    return `sampling.temperature ${said(s.temperature)}`;
  }
  if (!whole(s.length, 1) || s.length > MAX_LENGTH) {
    return `sampling.length ${said(s.length)} (1 to ${MAX_LENGTH})`;
  }
  if (s.top_k != null && !whole(s.top_k, 1)) return `sampling.top_k ${said(s.top_k)}`;
  if (s.top_p != null && !(typeof s.top_p === "number" && s.top_p > 0 && s.top_p <= 1)) {
    return `sampling.top_p ${said(s.top_p)}`;
  }
  const c = m.conditions;
  if (c == null) return null;
  if (typeof c !== "object" || !whole(c.document_id) || !Array.isArray(c.columns)) {
    return "conditions is damaged";
  }
  for (const column of c.columns) {
    const prior = column?.prior;
    if (typeof column?.name !== "string" || !texts(column.values) || !Array.isArray(prior) ||
        prior.length !== column.values.length || !prior.every((p) => typeof p === "number")) {
      return `conditions column ${said(column?.name)} is damaged`;
    }
  }
  return null;
}

// ---- tokens: the prime's ids, and each id's text (made once the manifest is checked) --------
const idOf = new Map();
let bpeEncode = null; // the BPE level: made from tokenizer.json when the page loads
let tokenBytes = [];
// BPE: [owed * V + id] → the continuation bytes owed after the token, or -1: banned
let nextOwed = null;

function readTokens() {
  (meta.tokens ?? []).forEach((text, id) => {
    if (id !== meta.unknown_id && text !== "") idOf.set(text, id);
  });
  tokenBytes = (meta.token_bytes ?? []).map(
    (hex) => new Uint8Array((hex.match(/../g) ?? []).map((pair) => parseInt(pair, 16))),
  );
  nextOwed = utf8Rules(tokenBytes);
}

function owedAfter(bytes, owed) {
  // bpe.py's _owed_after: continuation bytes owed after these bytes, or -1 (not UTF-8)
  for (const b of bytes) {
    if (b >= 0x80 && b < 0xc0) {
      if (owed === 0) return -1;
      owed--;
    } else if (owed || b === 0xc0 || b === 0xc1 || b >= 0xf5) return -1;
    else owed = b < 0x80 ? 0 : b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3;
  }
  return owed;
}

function utf8Rules(pieces) {
  // bpe.py's Utf8Rules: a sample's text stays well-formed UTF-8
  const table = new Int8Array(4 * pieces.length).fill(-1);
  pieces.forEach((bytes, id) => {
    for (let owed = 0; owed < 4; owed++) {
      if (bytes.length) table[owed * pieces.length + id] = owedAfter(bytes, owed);
    }
  });
  return table;
}

function spell(token) {
  // words.py's spell(): a token outside the vocabulary, written with pieces inside it
  const pieces = [];
  if (Array.from(token).length > 1 && token[0] === " ") {
    pieces.push(" ");
    token = token.slice(1);
  }
  if (WORD_START.test(token)) pieces.push(token);
  else pieces.push(...Array.from(token));
  return pieces;
}

function encode(text) {
  text = text.replace(RESERVED, "");
  if (meta.level === "bpe") return bpeEncode(text);
  if (meta.level === "char") return Array.from(text, (ch) => idOf.get(ch) ?? meta.unknown_id);
  const ids = [];
  for (const match of text.matchAll(WORD_TOKEN)) {
    const token = match[0];
    const pieces = idOf.has(token) ? [token] : spell(token);
    for (const piece of pieces) ids.push(idOf.get(piece) ?? meta.unknown_id);
  }
  return ids;
}

function primeIds(prime) {
  // as Model.prime_ids: a conditioned model starts a document (separator, mark), then the prime
  if (!prime) return meta.start_ids.slice();
  return [...(meta.conditions ? meta.start_ids : []), ...encode(prime)];
}

// ---- sampling: sampler.py's adjust_logits and choose ---------------------------------------
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function adjust(logits, s, owed) {
  const x = Float32Array.from(logits);
  for (const id of meta.banned) x[id] = -Infinity;
  if (meta.level === "bpe") {
    for (let id = 0; id < x.length; id++) if (nextOwed[owed * x.length + id] < 0) x[id] = -Infinity;
  }
  if (!s.greedy) {
    const scale = Math.fround(1 / s.temperature);
    for (let i = 0; i < x.length; i++) x[i] = scale > 0 ? x[i] * scale : isFinite(x[i]) ? 0 : x[i];
  }
  if (s.top_k !== null && s.top_k < x.length) {
    const kth = Float32Array.from(x).sort().reverse()[s.top_k - 1];
    for (let i = 0; i < x.length; i++) if (x[i] < kth) x[i] = -Infinity;
  }
  if (s.top_p !== null && s.top_p < 1) {
    const order = Array.from(x.keys()).sort((a, b) => x[b] - x[a] || a - b);
    const top = x[order[0]];
    const weights = order.map((i) => Math.exp(x[i] - top));
    const total = weights.reduce((a, b) => a + b, 0);
    let before = 0;
    order.forEach((id, rank) => {
      const p = weights[rank] / total;
      if (rank > 0 && before >= s.top_p) x[id] = -Infinity;
      before += p;
    });
  }
  return x;
}

function choose(x, s, uniform) {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  if (s.greedy) return best;
  let total = 0;
  const cumulative = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) cumulative[i] = total += Math.exp(x[i] - x[best]);
  let count = 0;
  for (let i = 0; i < x.length; i++) if (cumulative[i] <= uniform * total) count++;
  return count;
}

// ---- the model -----------------------------------------------------------------------------
function zeroState() {
  const shape = [meta.layers, 1, meta.hidden];
  const zeros = () => new ort.Tensor("float32", new Float32Array(meta.layers * meta.hidden), shape);
  return meta.cell === "lstm" ? { h0: zeros(), c0: zeros() } : { h0: zeros() };
}

async function run(ids, state, conditions) {
  // ids → the last position's logits, and the state after them
  const feeds = { ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]) };
  Object.assign(feeds, state);
  if (conditions) {
    const row = BigInt64Array.from(conditions, BigInt);
    feeds.conditions = new ort.Tensor("int64", row, [1, conditions.length]);
  }
  const out = await session.run(feeds);
  const vocab = meta.vocab_size;
  const logits = out.logits.data.slice((ids.length - 1) * vocab, ids.length * vocab);
  const next = { h0: out.h };
  if (meta.cell === "lstm") next.c0 = out.c;
  return [logits, next];
}

// ---- the page ------------------------------------------------------------------------------
function numberOr(id, fallback) {
  const value = $(id).value.trim();
  return value === "" ? fallback : Number(value);
}

function settings() {
  const temperature = numberOr("temperature", meta.sampling.temperature);
  const seed = numberOr("seed", null);
  return {
    prime: $("prime").value,
    temperature,
    greedy: temperature < GREEDY_BELOW,
    top_k: numberOr("top_k", null),
    top_p: numberOr("top_p", null),
    length: Math.min(Math.max(numberOr("length", meta.sampling.length), 0), MAX_LENGTH) || 0,
    seed: seed === null ? crypto.getRandomValues(new Uint32Array(1))[0] : seed,
  };
}

function conditionRow(random) {
  // each column's chosen value, or one drawn from its training share
  if (!meta.conditions) return null;
  return meta.conditions.columns.map((column, k) => {
    const chosen = $(`condition-${k}`).value;
    if (chosen !== "") return Number(chosen);
    let u = random();
    for (let i = 0; i < column.prior.length; i++) if ((u -= column.prior[i]) < 0) return i;
    return column.prior.length - 1;
  });
}

function show(state, status) {
  document.body.dataset.state = state;
  $("status").textContent = status;
  $("generate").disabled = state === "generating" || state === "loading";
  $("stop").disabled = state !== "generating";
}

async function generate() {
  const s = settings();
  const random = mulberry32(s.seed);
  const conditions = conditionRow(random);
  const output = $("output");
  output.textContent = "";
  const prime = document.createElement("span");
  prime.className = "prime";
  prime.textContent = s.prime;
  const made = document.createElement("span");
  made.id = "generated";
  output.append(prime, made);
  show("generating", "generating…");
  stopping = false;
  let [logits, state] = await run(primeIds(s.prime), zeroState(), conditions);
  const started = performance.now();
  let characters = 0;
  let text = "";
  let owed = 0; // BPE: continuation bytes the text still owes
  const bytes = new TextDecoder("utf-8");
  for (let step = 0; step < s.length && !stopping; step++) {
    const token = choose(adjust(logits, s, owed), s, random());
    let piece;
    if (meta.level !== "bpe") piece = meta.tokens[token];
    else {
      owed = nextOwed[owed * meta.vocab_size + token];
      const control = meta.conditions && token === meta.conditions.document_id;
      piece = control ? "" : bytes.decode(tokenBytes[token], { stream: true });
    }
    text += piece;
    characters += Array.from(piece).length;
    made.textContent = text;
    const rate = characters / Math.max((performance.now() - started) / 1000, 1e-6);
    document.body.dataset.charsPerSecond = rate.toFixed(1);
    $("status").textContent = `${characters} characters, ${rate.toFixed(0)} chars/s`;
    if (step + 1 < s.length) [logits, state] = await run([token], state, conditions);
  }
  const rate = document.body.dataset.charsPerSecond || "0";
  show("done", `${characters} characters, ${Number(rate).toFixed(0)} chars/s (seed ${s.seed})`);
}

function buildForm() {
  $("temperature").value = meta.sampling.temperature;
  $("length").value = meta.sampling.length;
  $("length").max = MAX_LENGTH;
  const bits = meta.held_out_bits_per_char;
  $("about").textContent =
    `${meta.level} level, ${meta.layers}×${meta.hidden} ${meta.cell.toUpperCase()}, ` +
    `${meta.vocab_size} tokens` + (bits ? `, held-out ${bits.toFixed(3)} bits/char` : "") +
    (meta.quantize !== "none" ? `, ${meta.quantize}` : "") + "; runs in this browser";
  for (const [k, column] of (meta.conditions?.columns ?? []).entries()) {
    const label = document.createElement("label");
    label.textContent = column.name;
    const select = document.createElement("select");
    select.id = `condition-${k}`;
    select.add(new Option("(drawn from the training share)", ""));
    column.values.forEach((value, i) => select.add(new Option(value, String(i))));
    label.append(select);
    $("conditions").append(label);
  }
}

async function start() {
  try {
    const problem = manifestProblem(meta);
    if (problem) throw new Error(`model.js is damaged: ${problem}; export the model again`);
    readTokens();
    buildForm();
    if (meta.level === "bpe") {
      const saved = await (await fetch("tokenizer.json")).json();
      bpeEncode = makeBpeEncoder(saved.tokenizer);
    }
    ort.env.wasm.wasmPaths = new URL(document.body.dataset.runtime, location.href).href;
    ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a plain server lacks
    session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  } catch (error) {
    show("error", `could not load the model: ${error}`);
    return;
  }
  $("generate").onclick = () =>
    generate().catch((error) => show("error", `generation failed: ${error}`));
  $("stop").onclick = () => (stopping = true);
  show("ready", "ready");
}

start();
