// The board's only way to the service: the /api/v1 endpoints, with the pasted key as a
// Bearer header. Answers are never kept by the browser's HTTP cache (cache: "no-store").

const KEY = "board.apiKey";
const MAX_PAGES = 50; // 100 rows a page: a list longer than 5000 rows is cut, and said so

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = problem && problem.code;
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  store: (key) => sessionStorage.setItem(KEY, key),
  forget: () => sessionStorage.removeItem(KEY),
  /** "staff", "provider", ... from the key's own prefix (ck_<role>_<id>_<secret>). */
  role: (key) => {
    const match = /^ck_([a-z]+)_/.exec(key || "");
    return match ? match[1] : null;
  },
};

export function createApi(base, onUnauthenticated) {
  async function get(path, params = {}) {
    const url = new URL(base + path, window.location.origin);
    for (const [name, value] of Object.entries(params)) {
      if (value === undefined || value === null || value === "") continue;
      for (const one of Array.isArray(value) ? value : [value]) url.searchParams.append(name, one);
    }
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${session.key()}`, Accept: "application/json" },
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.status === 401) onUnauthenticated();
    if (!response.ok) throw new ApiError(response.status, body);
    return { body, headers: response.headers };
  }

  /** Every page of a paginated list (page_size 100; the totals come in X-Pagination). */
  async function list(path, params = {}) {
    const rows = [];
    for (let page = 1; page <= MAX_PAGES; page += 1) {
      const { body, headers } = await get(path, { ...params, page, page_size: 100 });
      rows.push(...body);
      let pages = 1;
      try {
        pages = JSON.parse(headers.get("X-Pagination") || "{}").total_pages || 1;
      } catch {
        pages = 1;
      }
      if (page >= pages) break;
    }
    return rows;
  }

  /** The booking change feed: without a token, every visible booking that is not
   *  cancelled; with one, what changed since. Follows page tokens to the next sync token. */
  async function sync(syncToken) {
    const items = [];
    let params = syncToken ? { sync_token: syncToken, page_size: 500 } : { page_size: 500 };
    for (let page = 0; page < 1000; page += 1) {
      const { body } = await get("/sync/bookings", params);
      items.push(...body.items);
      if (body.next_sync_token) return { items, token: body.next_sync_token };
      params = { page_token: body.next_page_token, page_size: 500 };
    }
    throw new Error("The change feed did not end.");
  }

  return { get, list, sync, base };
}

/** A Swagger UI address for an operation (Swagger UI names an operation without an
 *  operationId "<method><path with non-word characters as _>"; with deepLinking on, the
 *  page opens at it). */
export function swaggerLink(docs, tag, method, path) {
  return `${docs}#/${tag}/${method}${path.replace(/[^\w]/g, "_")}`;
}
