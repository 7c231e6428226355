// Byte-level BPE encoding as Hugging Face `tokenizers` does it for lstmgen's BPE runs
// (tokens/bpe.py): added tokens whole, GPT-2's pre-tokenizer split, each piece's UTF-8 bytes
// written in the byte-level alphabet, then the merges applied lowest rank first.
"use strict";

const GPT2_SPLIT =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

function byteAlphabet() {
  // bytes.py's _byte_of_char, the other way: byte → its printable character
  const printable = [];
  const range = (a, b) => { for (let i = a; i <= b; i++) printable.push(i); };
  range(33, 126);
  range(161, 172);
  range(174, 255);
  const charOf = new Array(256);
  let extra = 0;
  for (let byte = 0; byte < 256; byte++) {
    charOf[byte] = String.fromCodePoint(printable.includes(byte) ? byte : 256 + extra++);
  }
  return charOf;
}

function makeBpeEncoder(saved) {
  // saved: tokenizer.json's "tokenizer" (the library's own JSON)
  const vocab = new Map(Object.entries(saved.model.vocab));
  const rank = new Map();
  saved.model.merges.forEach((merge, i) => {
    const [a, b] = typeof merge === "string" ? merge.split(" ") : merge;
    rank.set(`${a}\u0000${b}`, i);
  });
  const added = saved.added_tokens.slice().sort((x, y) => y.content.length - x.content.length);
  const charOf = byteAlphabet();
  const utf8 = new TextEncoder();
  const cache = new Map();

  function merge(piece) {
    if (cache.has(piece)) return cache.get(piece);
    let symbols = Array.from(utf8.encode(piece), (byte) => charOf[byte]);
    while (symbols.length > 1) {
      let best = Infinity;
      let pair = null;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = rank.get(`${symbols[i]}\u0000${symbols[i + 1]}`);
        if (r !== undefined && r < best) [best, pair] = [r, [symbols[i], symbols[i + 1]]];
      }
      if (pair === null) break;
      const merged = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === pair[0] && symbols[i + 1] === pair[1]) {
          merged.push(pair[0] + pair[1]);
          i++;
        } else merged.push(symbols[i]);
      }
      symbols = merged;
    }
    const ids = symbols.map((s) => vocab.get(s) ?? 0);
    cache.set(piece, ids);
    return ids;
  }

  function encodePlain(text, ids) {
    for (const match of text.matchAll(GPT2_SPLIT)) ids.push(...merge(match[0]));
  }

  return function encode(text) {
    const ids = [];
    let rest = text;
    while (rest) {
      let at = -1;
      let token = null;
      for (const candidate of added) {
        const i = rest.indexOf(candidate.content);
        if (i >= 0 && (at < 0 || i < at)) [at, token] = [i, candidate];
      }
      if (token === null) {
        encodePlain(rest, ids);
        break;
      }
      encodePlain(rest.slice(0, at), ids);
      ids.push(token.id);
      rest = rest.slice(at + token.content.length);
    }
    return ids;
  };
}
