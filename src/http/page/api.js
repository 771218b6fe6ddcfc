// The page's only door to the server: every REST call goes through api(), and every
// EventSource is opened on a URL from streamUrl(). Authentication (a bearer token for
// REST, a short-lived ticket for the stream) belongs here and nowhere else.

/** A REST call that did not answer 2xx; `status` 0 means the server was not reached. */
export class ApiError extends Error {
  constructor(path, status, body) {
    super(path + ": " + (status ? "HTTP " + status : "unreachable") +
      (body && body.error ? " (" + body.error.code + ": " + body.error.message + ")" : ""));
    this.status = status;
    this.body = body;
  }
}

/**
 * Calls the REST API: `path` is absolute ("/v1/..."), `options` as for fetch(). Resolves
 * to the parsed JSON body (null for 204); rejects with ApiError.
 */
export async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (options.body !== undefined && typeof options.body !== "string") {
    options = { ...options, body: JSON.stringify(options.body) };
    headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(path, { ...options, headers });
  } catch {
    throw new ApiError(path, 0, null);
  }
  if (res.status === 204) return null;
  let body = null;
  try { body = await res.json(); } catch { /* not JSON: reported with the status */ }
  if (!res.ok) throw new ApiError(path, res.status, body);
  return body;
}

/**
 * Resolves to the URL of a new EventSource on the fleet stream. Async so that a ticket
 * can be fetched first. `lastEventId` is where to resume when the page has to open a new
 * EventSource (the browser's own reconnects send Last-Event-ID by themselves, and that
 * header wins over the parameter).
 */
export async function streamUrl(lastEventId) {
  const query = lastEventId ? "?last_event_id=" + encodeURIComponent(lastEventId) : "";
  return "/v1/stream" + query;
}
