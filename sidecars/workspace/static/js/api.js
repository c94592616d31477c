// The workspace's REST API (documented in ../API.md and at /docs by FastAPI's OpenAPI): the page's
// only backend. Errors come back as {"errors": [{"field", "message"}]}; they become an ApiError the
// views show next to the field each one names.

export class ApiError extends Error {
  constructor(status, errors) {
    const first = errors[0] || { message: `the workspace answered ${status}` };
    super(String(first.message).split("\n")[0]);
    this.status = status;
    this.errors = errors.map((error) => ({ field: error.field ?? null, message: String(error.message ?? "").split("\n")[0] }));
  }
}

async function errorsOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    return [{ field: null, message: `the workspace answered ${response.status} ${response.statusText}` }];
  }
  if (body && Array.isArray(body.errors)) return body.errors;
  if (body && body.error && body.error.message) return [{ field: null, message: body.error.message }];
  if (body && typeof body.detail === "string") return [{ field: null, message: body.detail }];
  if (body && Array.isArray(body.detail)) {
    // FastAPI's own validation shape, in case a route answers before the workspace's handler does
    return body.detail.map((item) => ({ field: (item.loc || []).filter((part) => part !== "body").join("."), message: item.msg }));
  }
  return [{ field: null, message: `the workspace answered ${response.status}` }];
}

/** Call the API: request("GET", "/collaborations") → parsed JSON (or text for non-JSON answers). */
export async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/api${path}`, init);
  } catch {
    throw new ApiError(0, [{ field: null, message: "the workspace does not answer: is `ccr workspace` still running?" }]);
  }
  if (!response.ok) throw new ApiError(response.status, await errorsOf(response));
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** GET a file the API makes (a PDF): its bytes as a Blob, or an ApiError with the workspace's one line. */
export async function download(path) {
  let response;
  try {
    response = await fetch(`/api${path}`);
  } catch {
    throw new ApiError(0, [{ field: null, message: "the workspace does not answer: is `ccr workspace` still running?" }]);
  }
  if (!response.ok) throw new ApiError(response.status, await errorsOf(response));
  return response.blob();
}

export const get = (path) => request("GET", path);
export const post = (path, body = {}) => request("POST", path, body);
export const put = (path, body = {}) => request("PUT", path, body);

/** Path segment from a value a user or another party chose. */
export const segment = (value) => encodeURIComponent(String(value));

/** A query string from the entries that have a value. */
export function queryString(parameters) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(parameters)) if (value !== undefined && value !== null && value !== "") search.set(name, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}
