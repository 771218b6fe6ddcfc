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

// ---- credentials -------------------------------------------------------------------
// The bearer token arrives once in the URL fragment (#token=…, which browsers never send
// to a server), is kept for this tab only (sessionStorage) and removed from the address
// bar. The stream is opened with short-lived tickets (EventSource cannot send headers),
// so the token itself never appears in a URL a server or proxy sees.
const TOKEN_KEY = "fleetwire.token";
{
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function token() {
  let t = sessionStorage.getItem(TOKEN_KEY);
  if (!t) {
    t = (prompt("Bearer token (JWT) for this fleetwire API:") || "").trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
  }
  return t;
}

/**
 * Calls the REST API: `path` is absolute ("/v1/..."), `options` as for fetch(). Resolves
 * to the parsed JSON body (null for 204); rejects with ApiError. A 401 forgets the token
 * (the next call asks for a new one).
 */
export async function api(path, options = {}) {
  const headers = { Accept: "application/json", Authorization: "Bearer " + token(), ...(options.headers || {}) };
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
  if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY);
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
  const { ticket } = await api("/v1/stream-tickets", { method: "POST" });
  const resume = lastEventId ? "&last_event_id=" + encodeURIComponent(lastEventId) : "";
  return "/v1/stream?ticket=" + encodeURIComponent(ticket) + resume;
}
