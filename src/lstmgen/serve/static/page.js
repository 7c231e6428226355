// The playground: stream /v1/completions into the page, with chars/s. No libraries.
const $ = (id) => document.getElementById(id);
let controller = null;
let cards = {};  // the served models by id, as /v1/models describes them

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("key").value) h.Authorization = "Bearer " + $("key").value;
  return h;
}

async function loadModels() {
  const reply = await fetch("/v1/models", { headers: headers() });
  if (!reply.ok) { $("status").textContent = (await reply.json()).error.message; return; }
  const models = (await reply.json()).data;
  cards = Object.fromEntries(models.map((m) => [m.id, m]));
  $("model").replaceChildren(...models.map((m) => {
    const best = m.best_val_bits_per_char;
    const bits = best ? `, ${best.toFixed(2)} bits/char` : "";
    return new Option(`${m.id} (${m.level}${bits})`, m.id);
  }));
  showConditions();
}

// One selector per condition column of the chosen model; "any" leaves the column to chance.
function showConditions() {
  const columns = (cards[$("model").value] || {}).conditions || {};
  $("conditions").replaceChildren(...Object.entries(columns).map(([column, values]) => {
    const select = document.createElement("select");
    select.dataset.column = column;
    select.append(new Option("any", ""), ...values.map((v) => new Option(v, v)));
    const label = document.createElement("label");
    label.append(column + " ", select);
    return label;
  }));
}

function conditions() {
  const chosen = [...$("conditions").querySelectorAll("select")].filter((s) => s.value);
  return chosen.length ? Object.fromEntries(chosen.map((s) => [s.dataset.column, s.value])) : null;
}

// "\n" and "\t" typed in the stop field are a line break and a tab, as on the command line.
const unescapeStop = (text) =>
  text.replace(/\\([nt\\])/g, (_, c) => ({ n: "\n", t: "\t" })[c] || c);

// One sample as it streams; several each under a header of their own.
function show(texts) {
  $("text").textContent = texts.length < 2 ? texts[0] : texts.map(
    (text, i) => `${i ? "\n\n" : "\n"}----- sample ${i + 1} -----\n${text}`).join("");
}

async function generate(event) {
  event.preventDefault();
  const number = (id) => Number($(id).value);
  const body = {
    model: $("model").value, prompt: $("prime").value, stream: true,
    temperature: number("temperature"), top_p: number("top_p"),
    top_k: number("top_k"), max_tokens: number("max_tokens"), condition: conditions(),
    n: number("n"),
    seed: $("seed").value === "" ? undefined : number("seed"),
    max_copy: $("max_copy").value === "" ? undefined : number("max_copy"),
    stop: $("stop_at").value ? [unescapeStop($("stop_at").value)] : undefined,
  };
  $("shown-prime").textContent = body.prompt;
  $("text").textContent = "";
  const texts = Array(Math.max(1, Math.floor(body.n) || 1)).fill("");  // by choice index
  $("generate").disabled = true; $("stop").disabled = false;
  controller = new AbortController();
  const started = performance.now();
  let chars = 0, finish = "";
  try {
    const reply = await fetch("/v1/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!reply.ok) throw new Error((await reply.json()).error.message);
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const events = buffer.split("\n\n");
      buffer = events.pop();
      for (const event of events) {
        const data = event.replace(/^data: /, "");
        if (data === "[DONE]") continue;
        for (const choice of JSON.parse(data).choices) {
          texts[choice.index] += choice.text;
          chars += [...choice.text].length;
          if (choice.finish_reason) finish = ` (${choice.finish_reason})`;
        }
      }
      show(texts);
      const seconds = (performance.now() - started) / 1000;
      $("status").textContent = `${chars} chars, ${(chars / seconds).toFixed(0)} chars/s${finish}`;
    }
  } catch (error) {
    const stopped = error.name === "AbortError";
    $("status").textContent = stopped ? `stopped after ${chars} chars` : error.message;
  } finally {
    $("generate").disabled = false; $("stop").disabled = true;
  }
}

$("form").addEventListener("submit", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("prime").addEventListener("keydown", (e) => {  // Ctrl+Enter generates, as in many editors
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit();
});
$("key").addEventListener("change", loadModels);
$("model").addEventListener("change", showConditions);
loadModels();
