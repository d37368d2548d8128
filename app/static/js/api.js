// The HTTP API: fetches with the visitor's key, problem+json errors, base64 vectors.

const KEY_ITEM = "vggish.apiKey";
let apiKey = sessionStorage.getItem(KEY_ITEM) ?? "";

/** An error answer of the API: its problem+json `title` and `detail`, shown verbatim. */
export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

/** The key in use ("" for none). It lives in memory, and in sessionStorage only when asked. */
export function currentKey() {
  return apiKey;
}

export function keyRemembered() {
  return sessionStorage.getItem(KEY_ITEM) !== null;
}

export function setKey(key, remember) {
  apiKey = key.trim();
  if (remember && apiKey) sessionStorage.setItem(KEY_ITEM, apiKey);
  else sessionStorage.removeItem(KEY_ITEM);
}

async function problemOf(response) {
  const type = response.headers.get("content-type") ?? "";
  if (type.includes("json")) {
    const body = await response.json().catch(() => ({}));
    return new ApiError(body.status ?? response.status, body.title ?? `HTTP ${response.status}`, body.detail ?? "");
  }
  const text = (await response.text().catch(() => "")).slice(0, 300);
  return new ApiError(response.status, `HTTP ${response.status} ${response.statusText}`.trim(), text);
}

/** fetch + JSON, with `Authorization: Bearer <key>` when a key is set; throws ApiError on an error status. */
export async function request(path, init = {}) {
  const headers = new Headers(init.headers);
  if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
  let response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (error) {
    throw new ApiError(0, "Network error", `the server did not answer (${error.message})`);
  }
  if (!response.ok) throw await problemOf(response);
  return response.json();
}

function upload(file) {
  const body = new FormData();
  body.append("file", file, file.name || "audio");
  return { method: "POST", body };
}

/** GET /v1/models: the one model card. */
export async function getModel() {
  return (await request("/v1/models")).data[0];
}

/** GET /v1/heads: every stored classifier head (the pages one after another). */
export async function getHeads() {
  const heads = [];
  for (let page = "/v1/heads?limit=100"; page; ) {
    const answer = await request(page);
    heads.push(...answer.data);
    page = answer.next;
  }
  return heads;
}

/** GET /v1/collections: the collections to search. */
export async function getCollections() {
  return (await request("/v1/collections")).data;
}

/**
 * POST /v1/collections/{name}/search with a clip's segment embeddings: segment level (each result
 * names its segment and the query's that matched), or clip level with their mean when the clip has
 * more segments than `maxSegments`.
 */
export async function searchCollection(name, embeddings, timestamps, maxSegments, k = 10) {
  const segmentLevel = embeddings.length <= maxSegments;
  const body = segmentLevel
    ? { embeddings: embeddings.map((e) => Array.from(e)), timestamps }
    : { embedding: Array.from(meanOf(embeddings)) };
  const query = new URLSearchParams({ k: String(k), level: segmentLevel ? "segment" : "clip" });
  return request(`/v1/collections/${encodeURIComponent(name)}/search?${query}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

function meanOf(vectors) {
  const out = new Float64Array(vectors[0].length);
  for (const v of vectors) for (let i = 0; i < v.length; i++) out[i] += v[i] / vectors.length;
  return out;
}

/** POST /v1/embeddings (base64): {duration, timestamps, embeddings: Float32Array[], postprocessed?: Uint8Array[]}. */
export async function embed(file, postprocess) {
  const query = new URLSearchParams({ encoding: "base64", postprocess: String(postprocess) });
  const answer = await request(`/v1/embeddings?${query}`, upload(file));
  const item = answer.data[0];
  return {
    ...item,
    weights: answer.weights,
    embeddings: item.embeddings.map(float32s),
    postprocessed: item.postprocessed ? item.postprocessed.map(uint8s) : null,
  };
}

/** POST /v1/features (base64): the log-mel examples, each a Float32Array of 96 × 64 (frame, band). */
export async function features(file) {
  const answer = await request("/v1/features?encoding=base64", upload(file));
  const item = answer.data[0];
  return { ...item, examples: item.examples.map(float32s) };
}

/** POST /v1/heads/{name}/classify: the clip's best `topK` labels and each frame's. */
export async function classify(file, head, topK) {
  const query = new URLSearchParams({ top_k: String(topK) });
  const answer = await request(`/v1/heads/${encodeURIComponent(head)}/classify?${query}`, upload(file));
  return answer.data[0];
}

function bytesOf(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** base64 of little-endian float32 -> Float32Array. */
export function float32s(base64) {
  const bytes = bytesOf(base64);
  const view = new DataView(bytes.buffer);
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

/** base64 of uint8 -> Uint8Array. */
export function uint8s(base64) {
  return bytesOf(base64);
}
