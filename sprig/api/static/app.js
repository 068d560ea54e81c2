// The search-and-answer page: plain DOM, no build step. Every API error is shown in #error.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// The message of a failed response: FastAPI's `detail` (a string, or a list of validation errors).
async function errorOf(response) {
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = Array.isArray(body.detail) ? body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ") : body.detail;
  } catch (_) { /* not JSON: keep the status text */ }
  return `${response.status}: ${detail}`;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) throw new Error(await errorOf(response));
  return response;
}

function postJSON(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// --- search -------------------------------------------------------------------------------------------------

// The matched terms of a hit: SPLADE word pieces ("##ria" -> "ria") and BM25 stems, from explanation.terms.
function matchedTerms(explanation) {
  const terms = Object.values(explanation?.terms || {}).flat().map((t) => t.term.replace(/^##/, "").toLowerCase());
  return [...new Set(terms)].filter((t) => t.length >= 2);
}

// `text` as nodes with every word that starts with a matched term inside <mark>.
function highlighted(text, terms) {
  const parts = text.split(/(\p{L}[\p{L}\p{N}'-]*|\p{N}+)/u);
  return parts.map((part, i) => {
    const word = part.toLowerCase();
    const hit = i % 2 === 1 && terms.some((t) => word === t || (t.length >= 3 && word.startsWith(t)));
    return hit ? el("mark", { textContent: part }) : document.createTextNode(part);
  });
}

function retrieverRanks(explanation) {
  const entries = Object.entries(explanation?.retrievers || {});
  return entries.map(([name, r]) => `${name} ${r.rank === null ? "—" : "#" + r.rank}`).join(" · ");
}

function renderHit(hit) {
  const link = el("a", { href: `/documents/${encodeURIComponent(hit.id)}`, textContent: hit.title || hit.id, className: "hit-title" });
  link.addEventListener("click", (event) => { event.preventDefault(); openPassage(hit.id); });
  const meta = el("div", { className: "meta", textContent: `${hit.id} · score ${hit.score.toFixed(3)} · ${retrieverRanks(hit.explanation)}` });
  return el("li", { className: "hit" }, link, meta, el("div", { className: "snippet" }, ...highlighted(hit.snippet, matchedTerms(hit.explanation))));
}

async function search(event) {
  event.preventDefault();
  clearError();
  const button = event.submitter || $("search-form").querySelector("button");
  button.disabled = true;
  $("search-status").textContent = "Searching…";
  try {
    const body = { query: $("query").value, k: Number($("k").value), explain: true };
    if ($("mode").value) body.mode = $("mode").value;
    const result = await (await postJSON("/search", body)).json();
    $("hits").replaceChildren(...result.data.map(renderHit));
    $("search-status").textContent = `${result.count} passages (${result.mode}) in ${result.took_ms.toFixed(1)} ms`;
  } catch (error) {
    $("search-status").textContent = "";
    showError(`Search failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

// --- passages -----------------------------------------------------------------------------------------------

async function openPassage(id) {
  clearError();
  try {
    const passage = await (await api(`/documents/${encodeURIComponent(id)}`)).json();
    $("passage-title").textContent = passage.title || passage.id;
    $("passage-id").textContent = `id ${passage.id} · document ${passage.doc_id}`;
    $("passage-text").textContent = passage.text;
    $("passage").hidden = false;
    $("passage").focus();
  } catch (error) {
    showError(`Could not open passage ${id}: ${error.message}`);
  }
}

function passageLink(label, id) {
  const link = el("a", { href: `/documents/${encodeURIComponent(id)}`, textContent: label, className: "citation" });
  link.addEventListener("click", (event) => { event.preventDefault(); openPassage(id); });
  return link;
}

// --- answers ------------------------------------------------------------------------------------------------

// Server-Sent Events from a POST body: fetch + ReadableStream (EventSource can only GET).
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { type: "message", data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event.type = line.slice(6).trim();
        else if (line.startsWith("data:")) event.data += line.slice(5).trim();
      }
      yield { type: event.type, data: JSON.parse(event.data) };
    }
  }
}

// The answer text with each [n] marker linked to the first passage of citation n.
function citedText(text, citations) {
  const byNumber = new Map(citations.map((c) => [c.number, c.passage_ids[0]]));
  return text.split(/(\[\d+\])/).map((part) => {
    const id = byNumber.get(Number(part.slice(1, -1)));
    return /^\[\d+\]$/.test(part) && id ? passageLink(part, id) : document.createTextNode(part);
  });
}

function renderAnswer(answer) {
  $("answer-text").replaceChildren(...citedText(answer.answer, answer.citations));
  $("citations").replaceChildren(...answer.citations.map((c) =>
    el("li", {}, `[${c.number}] `, ...c.passage_ids.flatMap((id, i) => [i ? ", " : "", passageLink(id, id)]))));
  const s = answer.stats;
  const rows = [
    ["Compression", answer.closed_book ? `${answer.mode} (closed-book: ${answer.note})` : answer.mode],
    ["Context tokens", `${s.context_tokens ?? 0} of ${s.retrieved_tokens ?? 0} retrieved`],
    ["Time to first token", `${Math.round(s.ttft_ms)} ms`],
    ["Total", `${Math.round(s.latency_ms)} ms`],
  ];
  $("answer-stats").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: v })]));
}

async function ask(event) {
  event.preventDefault();
  clearError();
  const button = event.submitter || $("ask-form").querySelector("button");
  button.disabled = true;
  $("answer").setAttribute("aria-busy", "true");
  $("answer-text").textContent = "";
  $("citations").replaceChildren();
  $("answer-stats").replaceChildren();
  try {
    const body = { question: $("question").value, compress: $("compress").value, stream: true };
    if ($("mode").value) body.retrieval_mode = $("mode").value;
    const response = await postJSON("/answer", body);
    for await (const event of sseEvents(response)) {
      if (event.type === "token") $("answer-text").append(event.data.text);
      else if (event.type === "answer") renderAnswer(event.data);
      else if (event.type === "error") throw new Error(event.data.detail);
    }
  } catch (error) {
    showError(`Answer failed: ${error.message}`);
  } finally {
    $("answer").setAttribute("aria-busy", "false");
    button.disabled = false;
  }
}

// --- start --------------------------------------------------------------------------------------------------

async function start() {
  $("search-form").addEventListener("submit", search);
  $("ask-form").addEventListener("submit", ask);
  try {
    const health = await (await api("/health")).json();
    $("mode").replaceChildren(...health.modes.map((m) => el("option", { value: m, textContent: m })));
    $("index-info").textContent = `${health.passages} passages · modes ${health.modes.join(", ")} · v${health.version}`;
  } catch (error) {
    $("index-info").textContent = "";
    showError(`Could not read the index: ${error.message}`);
  }
}

start();
