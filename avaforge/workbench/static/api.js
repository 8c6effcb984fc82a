// JSON requests to the workbench API; a bearer token (the service's, from the URL's #token=) goes on each.

let token = sessionStorage.getItem("avaforge-token");

export function setToken(value) {
  token = value;
  sessionStorage.setItem("avaforge-token", value);
  history.replaceState(null, "", location.pathname); // keep the token out of the address bar
}

export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export async function api(method, path, body) {
  const init = { method, headers: { ...authHeaders() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path.replace(/^\//, ""), init); // relative: the page may live below /jobs/<job>/
  if (!resp.ok) {
    let detail = resp.statusText;
    try {
      const data = await resp.json();
      detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    } catch (err) {
      // not JSON: keep the status text
    }
    const error = new Error(`${resp.status}: ${detail}`);
    error.status = resp.status;
    throw error;
  }
  return resp.json();
}

// An image from the API: with a token, fetched with it (an <img src> cannot send headers)
export function loadImage(img, url) {
  const headers = authHeaders();
  if (!headers.Authorization) {
    img.src = url;
    return;
  }
  fetch(url, { headers })
    .then((r) => r.blob())
    .then((b) => (img.src = URL.createObjectURL(b)))
    .catch(() => img.dispatchEvent(new Event("error"))); // as a failed <img src> would
}
