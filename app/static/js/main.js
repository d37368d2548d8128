// The page: picks or records audio, asks the API, and draws each answer in its plot.
// Every plot's <figure> carries data-state (loading, drawn, empty, idle, error); the results carry
// data-* copies of the numbers shown, for people's tools and for the browser tests.

import * as api from "./api.js";
import { cosine, drawSimilarity, drawVectors, mean, similarity } from "./heatmap.js";
import { LiveSession } from "./live.js";
import { fmt } from "./plot.js";
import { drawProjection, pca2 } from "./projection.js";
import { MAX_LINES, drawScores, lineStyle, plottedLabels } from "./scores.js";
import { drawSpectrogram } from "./spectrogram.js";
import { decode, drawWaveform } from "./waveform.js";
import { wavFile } from "./wav.js";

const $ = (id) => document.getElementById(id);
const CLIP_PLOTS = ["waveform", "spectrogram", "embeddings", "postprocessed", "projection", "scores"];
const FIRST_VALUES = 8; // values of the first frame copied to data-* attributes
const LIVE_WINDOW_SECONDS = 10; // the live heatmap's time axis starts this long and grows

const state = { model: null, collections: null, fileA: null, embedA: null, embedB: null, features: null, labels: null, run: 0 };
const redraws = new Map(); // canvas id -> () => text alternative
let live = null;

// --- status, errors, plot states -----------------------------------------------------------

function status(text) {
  $("status").textContent = text;
}

function showError(error) {
  const box = $("error");
  box.replaceChildren();
  const title = document.createElement("strong");
  title.className = "title";
  title.textContent = error.title ?? "Error";
  const detail = document.createElement("span");
  detail.className = "detail";
  detail.textContent = error.detail ?? error.message ?? "";
  box.append(title, document.createTextNode(": "), detail);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
}

function errorText(error) {
  return error instanceof api.ApiError ? `${error.title}: ${error.detail}` : String(error.message ?? error);
}

/** Sets a plot's state, with a message under its title for anything but "drawn". */
function setPlot(name, plotState, message = "") {
  const figure = document.querySelector(`figure[data-plot="${name}"]`);
  figure.dataset.state = plotState;
  let note = figure.querySelector(".plot-message");
  if (!note) {
    note = document.createElement("p");
    note.className = "plot-message";
    figure.querySelector("figcaption").after(note);
  }
  note.textContent = message;
  note.classList.toggle("plot-error", plotState === "error");
  note.hidden = !message;
}

/** Draws a canvas now and after each resize or colour-scheme change; the text becomes its aria-label. */
function draw(name, canvasId, paint) {
  const canvas = $(canvasId);
  const render = () => canvas.setAttribute("aria-label", paint(canvas));
  redraws.set(canvasId, render);
  render();
  setPlot(name, "drawn");
}

function redrawAll() {
  for (const render of redraws.values()) render();
}

// --- the server: model card, heads, key --------------------------------------------------

function showModel(model) {
  const sha = model.weights.sha256 ?? "unknown";
  const random = sha === "random";
  $("weights").textContent = random ? "random (not trained)" : `${sha.slice(0, 12)}…`;
  $("weights").title = Object.entries(model.weights).map(([k, v]) => `${k}: ${v}`).join("\n");
  const pp = model.postprocessing ? "with PCA postprocessing" : "without PCA";
  $("model-details").textContent = `(${model.weights.source ?? "?"}, ${pp}; ${model.device}, ${model.backend})`;
  $("random-banner").hidden = !random;
  document.body.dataset.weights = sha;
}

function fillHeads(heads) {
  const select = $("head");
  const chosen = select.value;
  select.replaceChildren(new Option("none", ""));
  for (const head of heads) select.add(new Option(`${head.name} (${head.classes.length} labels)`, head.name));
  select.value = heads.some((h) => h.name === chosen) ? chosen : "";
  select.dataset.count = String(heads.length);
}

function fillCollections(collections) {
  const select = $("collection");
  const chosen = select.value;
  select.replaceChildren(new Option("none", ""));
  for (const c of collections) select.add(new Option(`${c.name} (${c.items} clips)`, c.name));
  select.value = collections.some((c) => c.name === chosen) ? chosen : "";
  select.dataset.count = String(collections.length);
  state.collections = new Map(collections.map((c) => [c.name, c]));
}

async function loadServer() {
  try {
    state.model = await api.getModel();
    showModel(state.model);
    fillHeads(await api.getHeads());
    fillCollections(await api.getCollections());
    clearError();
    document.body.dataset.server = "ready";
  } catch (error) {
    $("weights").textContent = "unknown (see the error below)";
    showError(error);
    document.body.dataset.server = "error";
  }
}

function useKey() {
  api.setKey($("api-key").value, $("remember-key").checked);
  status(api.currentKey() ? "Using the API key." : "No API key.");
  loadServer();
}

// --- one clip: waveform, log-mel, embeddings, PCA, head scores ---------------------------

async function showWave(file, run) {
  try {
    const wave = await decode(file);
    if (run === state.run) draw("waveform", "waveform", (canvas) => drawWaveform(canvas, wave));
  } catch (error) {
    if (run === state.run) setPlot("waveform", "error", `This browser cannot decode the file for display (${error.message}).`);
  }
}

async function showFeatures(file, run) {
  try {
    const features = await api.features(file);
    if (run !== state.run) return;
    state.features = features;
    const results = $("results").dataset;
    results.featuresShape = features.shape.join(",");
    results.features0 = features.examples.length ? Array.from(features.examples[0].slice(0, FIRST_VALUES)).join(",") : "";
    draw("spectrogram", "spectrogram", (canvas) => drawSpectrogram(canvas, features));
  } catch (error) {
    if (run === state.run) setPlot("spectrogram", "error", errorText(error));
    throw error;
  }
}

async function showEmbeddings(file, run) {
  try {
    const result = await api.embed(file, Boolean(state.model?.postprocessing));
    if (run !== state.run) return;
    state.embedA = result;
    describeClip(result);
    const clip = { vectors: result.embeddings, timestamps: result.timestamps, duration: result.duration };
    if (result.embeddings.length === 0) {
      for (const name of ["embeddings", "postprocessed", "projection"]) setPlot(name, "empty", "No example: the clip is shorter than 0.975 s.");
      return;
    }
    draw("embeddings", "embeddings", (canvas) => drawVectors(canvas, clip, "Embeddings"));
    if (result.postprocessed) {
      const pp = { ...clip, vectors: result.postprocessed };
      draw("postprocessed", "postprocessed", (canvas) => drawVectors(canvas, pp, "Postprocessed features", [0, 255]));
    } else {
      setPlot("postprocessed", "empty", "These weights carry no PCA parameters: no postprocessed features.");
    }
    showProjection(result);
  } catch (error) {
    if (run === state.run) for (const name of ["embeddings", "postprocessed", "projection"]) setPlot(name, "error", errorText(error));
    throw error;
  }
}

function describeClip(result) {
  const channels = result.channels === 1 ? "mono" : `${result.channels} channels`;
  $("clip-info").textContent =
    `${fmt(result.duration, 2)} s, ${result.sample_rate} Hz, ${channels}; ${result.embeddings.length} examples ` +
    `(0.975 s each, every 0.96 s); weights ${result.weights}.`;
  const data = $("results").dataset;
  data.frames = String(result.embeddings.length);
  data.duration = String(result.duration);
  data.embedding0 = result.embeddings.length ? Array.from(result.embeddings[0].slice(0, FIRST_VALUES)).join(",") : "";
  data.postprocessed0 = result.postprocessed?.length ? Array.from(result.postprocessed[0].slice(0, FIRST_VALUES)).join(",") : "";
}

function showProjection(result) {
  const projection = pca2(result.embeddings);
  if (!projection) {
    setPlot("projection", "empty", "A projection needs at least two different frames.");
    return;
  }
  $("results").dataset.explained = projection.explained.join(",");
  draw("projection", "projection", (canvas) => drawProjection(canvas, projection, result.timestamps));
}

async function showScores(file, run) {
  const head = $("head").value;
  state.labels = null;
  $("scores-legend").replaceChildren();
  delete $("results").dataset.labels0;
  if (!head) {
    setPlot("scores", "idle", "Choose a classifier head above to see each label's score over time.");
    return;
  }
  setPlot("scores", "loading", `Classifying with ${head}…`);
  try {
    const result = await api.classify(file, head, MAX_LINES); // the plotted lines of every frame
    if (run !== state.run || head !== $("head").value) return;
    state.labels = result;
    const best = result.frames[0]?.labels[0];
    $("results").dataset.labels0 = best ? `${best.label}:${best.score}` : "";
    if (result.frames.length === 0) {
      setPlot("scores", "empty", "No frame: the clip is shorter than 0.975 s.");
      return;
    }
    draw("scores", "scores", (canvas) => drawScores(canvas, result, result.duration));
    fillLegend(result);
  } catch (error) {
    if (run === state.run) setPlot("scores", "error", errorText(error));
    throw error;
  }
}

function fillLegend(result) {
  const items = plottedLabels(result).map((label, k) => {
    const style = lineStyle(k);
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.borderTop = `3px ${style.border} ${style.colour}`;
    const score = result.labels.find((l) => l.label === label).score;
    item.append(swatch, `${label}: ${fmt(score, 3)} for the whole clip`);
    return item;
  });
  $("scores-legend").replaceChildren(...items);
}

async function analyse(file) {
  const run = ++state.run;
  Object.assign(state, { fileA: file, embedA: null, features: null, labels: null });
  for (const key of Object.keys($("results").dataset)) delete $("results").dataset[key];
  for (const name of CLIP_PLOTS) setPlot(name, "loading", "Loading…");
  for (const id of ["waveform", "spectrogram", "embeddings", "postprocessed", "projection", "scores"]) redraws.delete(id);
  $("results").hidden = false;
  $("clip-title").textContent = file.name || "Recording";
  $("clip-info").textContent = "";
  $("results").dataset.state = "loading";
  clearError();
  status(`Analysing ${file.name}…`);
  const outcomes = await Promise.allSettled([
    showWave(file, run),
    showEmbeddings(file, run),
    showFeatures(file, run),
    showScores(file, run),
  ]);
  if (run !== state.run) return;
  updateSimilarity();
  await showSimilar(run);
  fillTable();
  const failures = outcomes.filter((o) => o.status === "rejected").map((o) => o.reason);
  if (failures.length) showError(failures[0]);
  const frames = state.embedA ? `${state.embedA.embeddings.length} examples` : "no embeddings";
  status(`${file.name}: ${frames}${failures.length ? `; ${failures.length} request(s) failed` : ""}.`);
  $("results").dataset.state = "done";
}

// --- similar clips in a collection --------------------------------------------------------

const QUERY_SEGMENTS = 64; // the server's default search_max_query_segments

function similarState(name, note) {
  $("similar").dataset.state = name;
  $("similar-note").textContent = note;
}

function seconds(a, b) {
  return `${fmt(a, 2)}–${fmt(b, 2)} s`;
}

/** Searches the chosen collection with the clip's embeddings; lists the matches, best first. */
async function showSimilar(run) {
  const name = $("collection").value;
  const a = state.embedA;
  $("similar-list").replaceChildren();
  $("similar-name").textContent = name;
  if (!name) return similarState("idle", "Choose a collection above to find the clips most like this one.");
  if (!a || !a.embeddings.length) return similarState("empty", "No embeddings to search with.");
  similarState("loading", `Searching ${name}…`);
  try {
    const answer = await api.searchCollection(name, a.embeddings, a.timestamps, QUERY_SEGMENTS);
    if (run !== state.run) return;
    $("similar-list").replaceChildren(...answer.results.map(similarItem));
    const known = state.collections?.get(name)?.features?.weights_sha256;
    const mine = state.model?.weights?.sha256;
    const other = known && mine && known !== mine ? " The collection was made with other weights: the scores mean little." : "";
    const level = answer.level === "segment" ? "best matching segments" : "whole clips (the clip is long)";
    similarState(answer.results.length ? "done" : "empty", `Cosine similarity of ${level}.${other}`);
  } catch (error) {
    if (run === state.run) similarState("error", errorText(error));
  }
}

function similarItem(result) {
  const item = document.createElement("li");
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = fmt(result.score, 4);
  item.append(score, ` ${result.id}`);
  item.dataset.id = result.id;
  item.dataset.score = String(result.score);
  if (result.segment) {
    item.append(` · ${seconds(result.segment.start, result.segment.end)}`);
    item.dataset.start = String(result.segment.start);
    item.dataset.end = String(result.segment.end);
  }
  if (result.query_segment) {
    item.append(` (this clip ${seconds(result.query_segment.start, result.query_segment.end)})`);
    item.dataset.queryStart = String(result.query_segment.start);
    item.dataset.queryEnd = String(result.query_segment.end);
  }
  return item;
}

// --- two clips: similarity ---------------------------------------------------------------

async function loadClipB(file) {
  setPlot("similarity", "loading", `Embedding ${file.name}…`);
  $("clip-b-name").textContent = file.name;
  try {
    state.embedB = await api.embed(file, false);
    updateSimilarity();
    status(`${file.name}: ${state.embedB.embeddings.length} examples to compare.`);
  } catch (error) {
    state.embedB = null;
    setPlot("similarity", "error", errorText(error));
    showError(error);
  }
}

function updateSimilarity() {
  const a = state.embedA;
  const b = state.embedB;
  const data = $("results").dataset;
  $("pooled").textContent = "–";
  delete data.pooled;
  redraws.delete("similarity");
  if (!a || !b) {
    setPlot("similarity", "idle", "Choose a second clip above to compare it with this one.");
    return;
  }
  if (!a.embeddings.length || !b.embeddings.length) {
    setPlot("similarity", "empty", "A clip without an example cannot be compared.");
    return;
  }
  const pooled = cosine(mean(a.embeddings), mean(b.embeddings));
  $("pooled").textContent = fmt(pooled, 4);
  data.pooled = String(pooled);
  const matrix = similarity(a.embeddings, b.embeddings);
  data.similarityShape = `${matrix.length},${matrix[0].length}`;
  data.similarity00 = String(matrix[0][0]);
  draw("similarity", "similarity", (canvas) => drawSimilarity(canvas, matrix, a, b));
}

// --- the numbers table -------------------------------------------------------------------

function fillTable() {
  const a = state.embedA;
  const table = $("numbers-table");
  table.replaceChildren();
  if (!a) return;
  const caption = table.createCaption();
  caption.textContent = `${a.name ?? "clip"}: each example's first values (all values: /v1/embeddings)`;
  const columns = ["#", "start (s)", "end (s)", "e[0]", "e[1]", "e[2]", "e[3]", "‖e‖"];
  if (a.postprocessed) columns.push("pp[0]", "pp[1]", "pp[2]", "pp[3]");
  if (state.features) columns.push("log-mel mean");
  if (state.labels) columns.push("best label", "score");
  const head = table.createTHead().insertRow();
  for (const text of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = text;
    head.append(th);
  }
  const body = table.createTBody();
  a.embeddings.forEach((e, i) => {
    const cells = [String(i), fmt(a.timestamps[i][0], 2), fmt(a.timestamps[i][1], 3)];
    cells.push(...Array.from(e.slice(0, 4), (v) => fmt(v, 4)), fmt(Math.hypot(...e), 3));
    if (a.postprocessed) cells.push(...Array.from(a.postprocessed[i].slice(0, 4), String));
    if (state.features) {
      const x = state.features.examples[i];
      cells.push(x ? fmt(x.reduce((s, v) => s + v, 0) / x.length, 3) : "");
    }
    if (state.labels) {
      const best = state.labels.frames[i]?.labels[0];
      cells.push(best?.label ?? "", best ? fmt(best.score, 3) : "");
    }
    const row = body.insertRow();
    for (const text of cells) row.insertCell().textContent = text;
  });
}

// --- live mode ---------------------------------------------------------------------------

function liveCallbacks(frames) {
  const section = $("live");
  return {
    onReady(message) {
      section.dataset.ready = "true";
      $("live-summary").textContent = `Streaming to the server (weights ${message.weights}); speak or play something.`;
    },
    onEmbedding(message) {
      frames.vectors.push(Float32Array.from(message.embedding));
      frames.timestamps.push([message.start, message.end]);
      section.dataset.examples = String(frames.vectors.length);
      if (frames.vectors.length === 1) section.dataset.first = message.embedding.slice(0, FIRST_VALUES).join(",");
      const duration = Math.max(LIVE_WINDOW_SECONDS, message.end);
      const clip = { vectors: frames.vectors, timestamps: frames.timestamps, duration };
      draw("live-heatmap", "live-heatmap", (canvas) => drawVectors(canvas, clip, "Live embeddings"));
      if (message.labels) showLiveScores(frames, message, duration);
      $("live-summary").textContent = `${frames.vectors.length} examples, ${fmt(message.end, 2)} s.`;
    },
    onEnd(message) {
      section.dataset.ended = "true";
      section.dataset.endExamples = String(message.examples);
      status(`Live: the server embedded ${message.examples} examples over ${fmt(message.seconds, 2)} s.`);
    },
    onError(error) {
      section.dataset.error = error.title;
      section.dataset.errorStatus = String(error.status);
      showError(error);
      resetLiveButtons();
    },
  };
}

/** The head's labels live: each label's score over time (colours fixed by the first frame's order), and
 * the latest frame's scores as meters. */
function showLiveScores(frames, message, duration) {
  frames.order ??= message.labels.map((l) => ({ label: l.label }));
  frames.labels.push({ start: message.start, end: message.end, labels: message.labels });
  const scores = { frames: frames.labels, labels: frames.order };
  draw("live-scores", "live-scores", (canvas) => drawScores(canvas, scores, duration).replace(/^Head/, "Live head"));
  const colour = new Map(plottedLabels(scores).map((label, k) => [label, lineStyle(k)]));
  const items = message.labels.slice(0, 5).map((l) => {
    const item = document.createElement("li");
    const meter = document.createElement("meter");
    Object.assign(meter, { min: 0, max: 1, value: l.score });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    const style = colour.get(l.label);
    if (style) swatch.style.borderTop = `3px ${style.border} ${style.colour}`;
    item.append(swatch, meter, `${l.label}: ${fmt(l.score, 3)}`);
    return item;
  });
  $("live-labels").replaceChildren(...items);
}

function resetLiveButtons() {
  $("record").disabled = false;
  $("stop").disabled = true;
}

async function startLive() {
  clearError();
  $("record").disabled = true;
  const section = $("live");
  for (const key of Object.keys(section.dataset)) delete section.dataset[key];
  section.hidden = false;
  $("live-labels").replaceChildren();
  $("live-summary").textContent = "Connecting…";
  setPlot("live-heatmap", "loading", "Waiting for the first 0.975 s…");
  const head = $("head").value;
  if (head) setPlot("live-scores", "loading", `Waiting for ${head}'s first labels…`);
  else setPlot("live-scores", "idle", "Choose a classifier head before recording to see its labels live.");
  for (const id of ["live-heatmap", "live-scores"]) redraws.delete(id);
  live = new LiveSession(liveCallbacks({ vectors: [], timestamps: [], labels: [], order: null }));
  try {
    const rate = await live.start({ head, postprocess: false, apiKey: api.currentKey() });
    $("stop").disabled = false;
    status(`Recording at ${rate} Hz. Press Stop to finish.`);
  } catch (error) {
    live.release();
    showError(new api.ApiError(0, "Microphone unavailable", error.message));
    resetLiveButtons();
  }
}

async function stopLive() {
  $("stop").disabled = true;
  const { chunks, rate } = await live.stop();
  resetLiveButtons();
  if (chunks.length && !live.failed) await analyse(wavFile(chunks, rate, "recording.wav"));
}

// --- wiring ------------------------------------------------------------------------------

function wire() {
  $("file-a").addEventListener("change", (event) => event.target.files[0] && analyse(event.target.files[0]));
  $("file-b").addEventListener("change", (event) => event.target.files[0] && loadClipB(event.target.files[0]));
  $("collection").addEventListener("change", () => state.fileA && showSimilar(state.run));
  $("head").addEventListener("change", async () => {
    if (!state.fileA) return;
    try {
      await showScores(state.fileA, state.run);
      clearError();
    } catch (error) {
      showError(error);
    }
    fillTable();
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) analyse(file);
  });
  $("record").addEventListener("click", startLive);
  $("stop").addEventListener("click", stopLive);
  $("use-key").addEventListener("click", useKey);
  $("api-key").addEventListener("keydown", (event) => event.key === "Enter" && useKey());
  $("api-key").value = api.currentKey();
  $("remember-key").checked = api.keyRemembered();
  let pending = false;
  new ResizeObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      redrawAll();
    });
  }).observe(document.body);
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redrawAll);
  if (!window.AudioWorkletNode || !navigator.mediaDevices) {
    $("record").disabled = true;
    $("record").title = "Recording needs a secure page (https or localhost) and a current browser.";
  }
}

wire();
setPlot("similarity", "idle", "Choose a second clip above to compare it with this one.");
loadServer();
