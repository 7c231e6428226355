// Runs the exported page's page.js in node (no browser) on each manifest of a JSON list, with
// the DOM and onnxruntime-web stubbed, and prints what the page showed for each: its state
// (data-state on <body>), its status line, and any error it left uncaught.
//   node tests/js/run_page.js page.js manifests.json
"use strict";
const fs = require("fs");
const vm = require("vm");

const page = fs.readFileSync(process.argv[2], "utf8");
const manifests = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
let uncaught = [];
process.on("unhandledRejection", (error) => uncaught.push(String(error)));

function context(manifest) {
  const elements = new Map();
  const element = (id) => {
    if (!elements.has(id)) {
      elements.set(id, {
        id, value: "", textContent: "", disabled: false, dataset: {}, append() {}, add() {},
      });
    }
    return elements.get(id);
  };
  let made = 0;
  const document = {
    body: { dataset: { state: "loading", runtime: "ort/" } },
    getElementById: element,
    createElement: () => element(`made-${made++}`),
  };
  const ort = { env: { wasm: {} }, InferenceSession: { create: async () => ({}) } };
  return {
    window: { LSTMGEN_MODEL: manifest }, document, ort, URL, Option: function Option() {},
    location: { href: "http://localhost/" }, fetch: async () => ({ json: async () => ({}) }),
    makeBpeEncoder: () => () => [], console, element,
  };
}

(async () => {
  const shown = [];
  for (const manifest of manifests) {
    uncaught = [];
    const sandbox = context(manifest);
    try {
      vm.runInNewContext(page, sandbox);
    } catch (error) {
      uncaught.push(String(error));
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    const status = sandbox.element("status").textContent;
    shown.push({ state: sandbox.document.body.dataset.state, status, uncaught });
  }
  console.log(JSON.stringify(shown));
})();
