// The day board: signs in with a pasted key, loads the clinic's directory and the booking
// change feed once, then polls the feed with its sync token and redraws from memory.

import { ApiError, createApi, session, swaggerLink } from "./api.js";
import { renderCourse } from "./course.js";
import { renderNeeds } from "./needs.js";
import {
  applyChanges, boardStatus, flagsOf, notArrived, sortAlerts, STATUS_LABELS, vitalsDue,
} from "./rules.js";
import { addDays, dayBounds, localDate, localTime, longDate, shortDate } from "./time.js";
import { aftercareWord, el, onTimelineKey, renderLocation, scrollToAnchor, shortName } from "./timeline.js";

const FEED_POLL_MS = 15000;
const NEEDS_POLL_MS = 60000;
const CLOCK_MS = 30000;
const ROLES = new Set(["staff", "provider", "admin"]);
const DAY = 86400000;

const $ = (id) => document.getElementById(id);
const API_BASE = document.body.dataset.api;
const DOCS = document.body.dataset.docs;

let state = null;
const timers = [];

function freshState() {
  return {
    role: null,
    locations: [],
    serviceTypes: new Map(),
    providers: new Map(),
    bookings: new Map(),
    token: null,
    patients: new Map(),
    holds: new Map(),
    vitals: new Map(),
    needs: { alerts: null, tasks: null, licenses: null, errors: {} },
    sessionsLoaded: false,
    homeZone: Intl.DateTimeFormat().resolvedOptions().timeZone,
    date: null,
    polling: false,
    lastSync: null,
    coursePatient: null,
  };
}

const api = createApi(API_BASE, () => signOut("The key is no longer accepted; sign in again."));

// Sign in and out ---------------------------------------------------------------------------

function showSignIn(message = "") {
  $("board").hidden = true;
  $("tools").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  $("api-key").focus();
}

function signOut(message = "") {
  for (const timer of timers.splice(0)) clearInterval(timer);
  session.forget();
  state = null;
  for (const id of ["locations", "needs-body", "course-body", "patient-results", "visit-fields", "record-body",
    "announcer", "sync-state"]) {
    $(id).replaceChildren();
  }
  $("needs-summary").textContent = "";
  $("patient-name").value = "";
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  showSignIn(message);
}

async function onSignIn(event) {
  event.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  const role = session.role(key);
  if (!key) {
    $("sign-in-error").textContent = "Paste an API key.";
    return;
  }
  if (!ROLES.has(role)) {
    $("sign-in-error").textContent = "Use a staff or provider key (ck_staff_\u2026 or ck_provider_\u2026).";
    return;
  }
  session.store(key);
  try {
    await api.get("/locations", { page_size: 1 });
  } catch (error) {
    session.forget();
    $("sign-in-error").textContent = error instanceof ApiError && error.status === 401
      ? "This key was not accepted." : `The service did not answer (${error.message}).`;
    return;
  }
  input.value = "";
  start();
}

// Loading -----------------------------------------------------------------------------------

async function start() {
  state = freshState();
  state.role = session.role(session.key());
  $("sign-in").hidden = true;
  $("board").hidden = false;
  $("tools").hidden = false;
  $("who").textContent = `Signed in: ${state.role} key`;
  $("course-body").replaceChildren(el("p", { class: "muted",
    text: "Open a visit and choose \"Patient course\", or find a patient." }));
  setSync("Loading\u2026");
  try {
    const [locations, types, providers] = await Promise.all([
      api.list("/locations", { active: true }), api.list("/service-types"), api.list("/providers"),
    ]);
    state.locations = locations.sort((a, b) => (a.kind === b.kind ? a.name.localeCompare(b.name)
      : (a.kind === "clinic" ? -1 : 1)));
    state.serviceTypes = new Map(types.map((t) => [t.id, t]));
    state.providers = new Map(providers.map((p) => [p.id, p]));
    const clinic = state.locations.find((l) => l.kind === "clinic") || state.locations[0];
    if (clinic) state.homeZone = clinic.timezone;
    state.date = dateFromHash() || localDate(Date.now(), state.homeZone);
    $("board-date").value = state.date;
    await fullSync(state);
  } catch (error) {
    if (!state) return;
    setSync(`Could not load the board: ${error.message}`);
    return;
  }
  render();
  refreshNeeds();
  timers.push(setInterval(pollFeed, FEED_POLL_MS), setInterval(refreshNeeds, NEEDS_POLL_MS),
    setInterval(render, CLOCK_MS));
}

/** Every visible booking from the change feed, and the sync token to ask for changes. */
async function fullSync(current) {
  const { items, token } = await api.sync(null);
  if (state !== current) return;
  current.bookings = new Map();
  applyChanges(current.bookings, items);
  current.token = token;
  current.lastSync = Date.now();
  setSync(`Up to date ${localTime(current.lastSync, current.homeZone)}`);
}

/** One look at the change feed with the sync token: only what changed comes back. */
async function pollFeed() {
  if (!state || state.polling) return;
  if (!state.token) {
    if (state.locations.length) {
      state.polling = true;
      const current = state;
      fullSync(current).then(render, (error) => setSync(`Not updated: ${error.message}`))
        .finally(() => { current.polling = false; });
    }
    return;
  }
  state.polling = true;
  const current = state;
  try {
    const { items, token } = await api.sync(current.token);
    if (state !== current) return;
    const changed = applyChanges(current.bookings, items);
    current.token = token;
    current.lastSync = Date.now();
    setSync(`Up to date ${localTime(current.lastSync, current.homeZone)}`
      + (changed ? ` \u00b7 ${changed} ${changed === 1 ? "change" : "changes"}` : ""));
    if (changed) {
      announce(`${changed} ${changed === 1 ? "change" : "changes"} to the bookings at ${localTime(current.lastSync, current.homeZone)}`);
      render();
      refreshSessions();
    }
  } catch (error) {
    if (state !== current) return;
    if (error instanceof ApiError && error.status === 410) {
      current.token = null; // expired: sync again from scratch
      try {
        await fullSync(current);
        render();
      } catch (again) {
        setSync(`Not updated: ${again.message}`);
      }
    } else {
      setSync(`Not updated since ${current.lastSync ? localTime(current.lastSync, current.homeZone) : "\u2013"}: ${error.message}`);
      announce("The board is not updating; it keeps trying.");
    }
  } finally {
    current.polling = false;
  }
}

function setSync(text) {
  $("sync-state").textContent = text;
}

/** Tell a screen reader what changed (only real news: not every quiet poll). */
function announce(text) {
  if ($("announcer").textContent !== text) $("announcer").textContent = text;
}

/** Patients' names for the visits and items on screen, fetched once each. */
function ensurePatients(ids) {
  const wanted = [...new Set(ids)].filter((id) => id && !state.patients.has(id));
  if (wanted.length === 0) return;
  const current = state;
  for (const id of wanted) current.patients.set(id, "loading");
  const queue = [...wanted];
  const worker = async () => {
    while (queue.length && state === current) {
      const id = queue.shift();
      try {
        const { body } = await api.get(`/patients/${id}`);
        current.patients.set(id, body);
      } catch (error) {
        if (error instanceof ApiError && (error.status === 403 || error.status === 404)) {
          current.patients.set(id, { hidden: true });
        } else {
          current.patients.delete(id); // asked again at the next redraw
        }
      }
    }
  };
  Promise.all([worker(), worker(), worker(), worker()]).then(() => {
    if (state === current) {
      render();
      renderNeedsPanel();
    }
  });
}

// The day -----------------------------------------------------------------------------------

function visitsOn(location, date) {
  const [from, to] = dayBounds(date, location.timezone);
  return [...state.bookings.values()].filter((b) => {
    if (b.location_id !== location.id) return false;
    const start = Date.parse(b.start);
    return start >= from && start < to;
  });
}

function render() {
  if (!state || !state.date) return;
  const now = Date.now();
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.bookingId : null;
  const scrolled = new Map([...document.querySelectorAll("#locations .location")].map((section) => [
    section.dataset.location, section.querySelector(".scroller")?.scrollLeft ?? 0]));
  const sameDay = $("locations").dataset.date === state.date;
  const sections = [];
  const shown = [];
  for (const location of state.locations) {
    const visits = visitsOn(location, state.date);
    shown.push(...visits);
    sections.push(renderLocation({ location, date: state.date, visits,
      serviceTypes: state.serviceTypes, providers: state.providers, patients: state.patients,
      holds: state.holds, now }));
  }
  if (state.locations.length === 0) sections.push(el("p", { class: "muted", text: "No active locations." }));
  if (replaceIfChanged($("locations"), sections)) {
    $("locations").dataset.date = state.date;
    for (const section of sections) {
      const scroller = section.querySelector && section.querySelector(".scroller");
      if (!scroller) continue;
      if (sameDay && scrolled.has(section.dataset.location)) scroller.scrollLeft = scrolled.get(section.dataset.location);
      else scrollToAnchor(section);
    }
    if (focused) {
      const again = document.querySelector(`.visit[data-booking-id="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }
  $("day-title").textContent = `The day: ${longDate(state.date)}`;
  $("day-title").dataset.date = state.date;
  ensurePatients(shown.map((b) => b.patient_id));
  renderNeedsPanel();
}

const drawn = new WeakMap();

/** Swap a container's content only when the new content differs: a redraw that changes
 *  nothing leaves the page alone (focus, scroll, a click under way, a screen reader's place). */
function replaceIfChanged(container, nodes) {
  const html = nodes.map((node) => node.outerHTML).join("");
  if (drawn.get(container) === html && container.childElementCount === nodes.length) return false;
  container.replaceChildren(...nodes);
  drawn.set(container, html);
  return true;
}

function setDate(date) {
  if (!state || !/^\d{4}-\d{2}-\d{2}$/.test(date)) return;
  state.date = date;
  $("board-date").value = date;
  window.history.replaceState(null, "", `#date=${date}`);
  render();
}

function dateFromHash() {
  const match = /^#date=(\d{4}-\d{2}-\d{2})$/.exec(window.location.hash);
  return match ? match[1] : null;
}

// Visit details -----------------------------------------------------------------------------

function openVisit(bookingId, opener) {
  const booking = state.bookings.get(bookingId);
  if (!booking) return;
  const type = state.serviceTypes.get(booking.service_type_id);
  const location = state.locations.find((l) => l.id === booking.location_id);
  const zone = location ? location.timezone : state.homeZone;
  const provider = state.providers.get(booking.provider_id);
  const patient = state.patients.get(booking.patient_id);
  const now = Date.now();
  const status = boardStatus(booking, now);
  const start = Date.parse(booking.start);
  const fields = [
    ["Patient", patient && patient.first_name ? `${patient.first_name} ${patient.last_name}` : "Patient"],
    ["Visit", type ? type.name : "Visit"],
    ["Time", `${shortDate(start, zone)}, ${localTime(start, zone)}\u2013${localTime(Date.parse(booking.end), zone)} (${zone})`],
  ];
  if (booking.hold_until && booking.hold_until !== booking.end) {
    fields.push([type && type.requires_rems ? "Monitoring until" : "Recovery until",
      localTime(Date.parse(booking.hold_until), zone)]);
  }
  fields.push(["Where", `${location ? location.name : "\u2013"}${booking.chair_number ? `, chair ${booking.chair_number}` : ""}`]);
  fields.push(["Provider", provider ? provider.name : "\u2013"]);
  fields.push(["Status", `${STATUS_LABELS[status]}${status !== booking.status ? ` (API: ${booking.status})` : ""}`]);
  if (booking.checked_in_at) fields.push(["Checked in", localTime(Date.parse(booking.checked_in_at), zone)]);
  if (type && type.needs_chair) fields.push(["Ride home confirmed", booking.ride_home_confirmed ? "yes" : "no"]);
  if (booking.series_id) fields.push(["Series", "part of a treatment series"]);
  const holds = (state.holds.get(booking.id) || []).filter((h) => h.active);
  if (holds.length) fields.push(["Hold", "blood pressure above the threshold: needs a provider's override"]);
  for (const flag of flagsOf(booking)) fields.push(["Flag", flag]);
  $("visit-fields").replaceChildren(...fields.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]));
  const record = `${API_BASE}/bookings/${booking.id}`;
  const swagger = swaggerLink(DOCS, "bookings", "get", "/api/v1/bookings/{booking_id}");
  $("visit-record").href = record;
  $("visit-record").dataset.record = record;
  $("visit-record").dataset.swagger = swagger;
  $("visit-swagger").href = swagger;
  $("visit-course").dataset.patientId = booking.patient_id;
  const dialog = $("visit-dialog");
  dialog.returnFocusTo = opener;
  dialog.showModal();
}

function closeDialog(dialog) {
  dialog.close();
}

/** The close event comes a task after the dialog closed: by then the browser may have put the
 *  focus back itself, or the person may have moved it on. Only a focus left nowhere (on the
 *  page's body, or inside the closed dialog) goes back to what opened the dialog. */
function onDialogClose(event) {
  const dialog = event.target;
  const opener = dialog.returnFocusTo;
  dialog.returnFocusTo = null;
  const active = document.activeElement;
  const lost = !active || active === document.body || dialog.contains(active);
  if (lost && opener && document.contains(opener)) opener.focus();
}

async function openRecord(path, swagger, opener) {
  const dialog = $("record-dialog");
  $("record-path").textContent = `GET ${path}`;
  $("record-body").textContent = "Loading\u2026";
  $("record-swagger").href = swagger || DOCS;
  dialog.returnFocusTo = opener;
  if (!dialog.open) dialog.showModal();
  try {
    const { body } = await api.get(path.slice(API_BASE.length).split("?")[0],
      Object.fromEntries(new URL(path, window.location.origin).searchParams));
    $("record-body").textContent = JSON.stringify(body, null, 2);
  } catch (error) {
    $("record-body").textContent = `Could not read the record: ${error.message}`;
  }
}

// Needs a person now ------------------------------------------------------------------------

/** Holds and vital signs of today's checked-in treatments (the sessions that can be held or
 *  due a reading); asked per booking, as the API offers them. */
async function refreshSessions() {
  if (!state) return;
  const current = state;
  const now = Date.now();
  const active = [...current.bookings.values()].filter((b) => {
    const type = current.serviceTypes.get(b.service_type_id);
    return b.status === "checked-in" && type && type.needs_chair
      && Date.parse(b.start) > now - DAY && Date.parse(b.start) < now + DAY;
  });
  await Promise.all(active.map(async (b) => {
    try {
      const [holds, vitals] = await Promise.all([
        api.list(`/bookings/${b.id}/holds`), api.list(`/bookings/${b.id}/vitals`)]);
      current.holds.set(b.id, holds);
      current.vitals.set(b.id, vitals);
    } catch {
      /* shown as not known; the next refresh asks again */
    }
  }));
  current.sessionsLoaded = true;
  for (const id of [...current.holds.keys()]) {
    if (!active.some((b) => b.id === id)) {
      current.holds.delete(id);
      current.vitals.delete(id);
    }
  }
  if (state === current) render();
}

async function refreshNeeds() {
  if (!state) return;
  const current = state;
  const soon = new Date(Date.now() + 7 * DAY).toISOString();
  const ask = async (name, call) => {
    try {
      current.needs[name] = await call();
      delete current.needs.errors[name];
    } catch (error) {
      current.needs.errors[name] = error instanceof ApiError && (error.status === 403 || error.status === 404)
        ? "Not available to this key." : `Could not load: ${error.message}`;
    }
  };
  await Promise.all([
    ask("alerts", () => api.list("/alerts")),
    ask("tasks", () => api.list("/tasks", { status: "open", due_before: soon })),
    ask("licenses", () => api.list("/licenses/expiring", { within_days: 60 })),
    refreshSessions(),
  ]);
  if (state !== current) return;
  ensurePatients([...(current.needs.alerts || []), ...(current.needs.tasks || [])].map((r) => r.patient_id));
  renderNeedsPanel();
}

function where(booking) {
  const location = state.locations.find((l) => l.id === booking.location_id);
  const chair = booking.chair_number ? `chair ${booking.chair_number}` : null;
  return [chair, location ? location.name : null].filter(Boolean).join(", ");
}

function zoneOf(booking) {
  const location = state.locations.find((l) => l.id === booking.location_id);
  return location ? location.timezone : state.homeZone;
}

function relativeDays(ms, now) {
  const days = Math.round((ms - now) / DAY);
  if (days === 0) return "today";
  if (days > 0) return `in ${days} ${days === 1 ? "day" : "days"}`;
  return `${-days} ${days === -1 ? "day" : "days"} ago`;
}

function buildNeeds() {
  const now = Date.now();
  const name = (patientId) => shortName(state.patients.get(patientId));
  const needs = state.needs;
  const sections = [];
  const LOADING = "Loading\u2026";
  const pending = (name) => needs.errors[name] || (needs[name] === null ? LOADING : undefined);

  sections.push({ key: "alerts", title: "Open alerts", none: "No open alerts.", error: pending("alerts"),
    items: sortAlerts(needs.alerts || []).map((alert) => ({
      level: alert.urgent ? "urgent" : "due",
      text: `${alert.kind === "phq9_item_9" ? "PHQ-9 item 9 above 0 (self-harm thoughts)" : alert.kind}: ${alert.patient_id ? name(alert.patient_id) : (state.providers.get(alert.provider_id) || { name: "Provider" }).name}`,
      meta: `raised ${shortDate(Date.parse(alert.raised_at), state.homeZone)} ${localTime(Date.parse(alert.raised_at), state.homeZone)}`,
      // An alert about no patient (calendar_stale): the provider's connected calendar.
      record: alert.patient_id ? `${API_BASE}/alerts?patient_id=${alert.patient_id}`
        : `${API_BASE}/providers/${alert.provider_id}/calendar-connections/${alert.connection_id}`,
      swagger: swaggerLink(DOCS, "assessments", "post", "/api/v1/alerts/{alert_id}/acknowledge"),
    })) });

  const today = [...state.bookings.values()].filter((b) => {
    const start = Date.parse(b.start);
    return start > now - DAY && start < now + DAY && localDate(start, zoneOf(b)) === localDate(now, zoneOf(b));
  }).sort((a, b) => Date.parse(a.start) - Date.parse(b.start));

  const held = today.filter((b) => (state.holds.get(b.id) || []).some((h) => h.active));
  sections.push({ key: "holds", title: "Sessions on hold", none: "No session on hold.",
    error: state.sessionsLoaded ? undefined : LOADING,
    items: held.map((b) => ({
      level: "urgent",
      text: `On hold (blood pressure): ${name(b.patient_id)}`,
      meta: `${localTime(Date.parse(b.start), zoneOf(b))}, ${where(b)}`,
      record: `${API_BASE}/bookings/${b.id}/holds`,
      swagger: swaggerLink(DOCS, "sessions", "post", "/api/v1/bookings/{booking_id}/holds/override"),
    })) });

  const vitalItems = [];
  for (const b of today) {
    const type = state.serviceTypes.get(b.service_type_id);
    if (!state.vitals.has(b.id)) continue;
    for (const due of vitalsDue(b, type, state.vitals.get(b.id), now)) {
      const zone = zoneOf(b);
      const window = due.until ? `${localTime(due.from, zone)}\u2013${localTime(due.until, zone)}`
        : `from ${localTime(due.from, zone)}`;
      vitalItems.push({
        level: due.overdue ? "overdue" : "due",
        text: `${due.label}: ${name(b.patient_id)}`,
        meta: `${window}, ${where(b)}${due.kind === "discharge" ? `; ${aftercareWord(type)} over` : ""}`,
        record: `${API_BASE}/bookings/${b.id}/vitals`,
        swagger: swaggerLink(DOCS, "sessions", "post", "/api/v1/bookings/{booking_id}/vitals"),
      });
    }
  }
  sections.push({ key: "vitals", title: "Vital signs due", none: "No reading due.", items: vitalItems,
    error: state.sessionsLoaded ? undefined : LOADING });

  sections.push({ key: "arrivals", title: "Not arrived", none: "Everyone due has arrived.",
    items: today.filter((b) => notArrived(b, now)).map((b) => ({
      level: "due",
      text: `Not checked in: ${name(b.patient_id)}`,
      meta: `${localTime(Date.parse(b.start), zoneOf(b))} ${(state.serviceTypes.get(b.service_type_id) || {}).name || ""}, ${where(b)}`,
      record: `${API_BASE}/bookings/${b.id}`,
      swagger: swaggerLink(DOCS, "bookings", "post", "/api/v1/bookings/{booking_id}/check-in"),
    })) });

  const flagged = [...state.bookings.values()]
    .filter((b) => Date.parse(b.end) > now - DAY && flagsOf(b).length && b.status !== "fulfilled")
    .sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
  if (flagged.length) {
    sections.push({ key: "flagged", title: "Flagged visits", none: "",
      items: flagged.map((b) => ({
        level: "urgent",
        text: `${flagsOf(b).join(", ")}: ${name(b.patient_id)}`,
        meta: `${shortDate(Date.parse(b.start), zoneOf(b))} ${localTime(Date.parse(b.start), zoneOf(b))}, ${where(b)}`,
        record: `${API_BASE}/bookings/${b.id}`,
        swagger: swaggerLink(DOCS, "bookings", "get", "/api/v1/bookings/{booking_id}"),
      })) });
  }

  sections.push({ key: "tasks", title: "REMS forms due", none: "No REMS form due within 7 days.",
    error: pending("tasks"),
    items: (needs.tasks || []).slice().sort((a, b) => Date.parse(a.due_at) - Date.parse(b.due_at)).map((task) => ({
      level: Date.parse(task.due_at) < now ? "overdue" : "due",
      text: `REMS patient monitoring form: ${name(task.patient_id)}`,
      meta: `due ${shortDate(Date.parse(task.due_at), state.homeZone)} (${relativeDays(Date.parse(task.due_at), now)})`,
      record: `${API_BASE}/tasks?patient_id=${task.patient_id}&status=open`,
      swagger: swaggerLink(DOCS, "sessions", "post", "/api/v1/tasks/{task_id}/complete"),
    })) });

  sections.push({ key: "licenses", title: "Licenses expiring (60 days)", none: "No license expires within 60 days.",
    error: pending("licenses"),
    items: (needs.licenses || []).slice().sort((a, b) => a.expires_on.localeCompare(b.expires_on)).map((license) => {
      const provider = state.providers.get(license.provider_id);
      const expires = Date.parse(`${license.expires_on}T12:00:00Z`);
      return {
        level: expires - now < 14 * DAY ? "overdue" : "info",
        text: `${provider ? provider.name : "Provider"}: ${license.jurisdiction} ${license.kind.replace("-", " ")}`,
        meta: `expires ${license.expires_on} (${relativeDays(expires, now)})`,
        record: `${API_BASE}/providers/${license.provider_id}/licenses/${license.id}`,
        swagger: swaggerLink(DOCS, "providers", "patch", "/api/v1/providers/{provider_id}/licenses/{license_id}"),
      };
    }) });
  return sections;
}

function renderNeedsPanel() {
  if (!state) return;
  const sections = buildNeeds();
  const total = sections.reduce((sum, s) => sum + (s.error ? 0 : s.items.length), 0);
  const urgent = sections.reduce((sum, s) => sum + s.items.filter((i) => i.level === "urgent").length, 0);
  const summary = total === 0 ? "Nothing needs a person right now."
    : `${total} ${total === 1 ? "item" : "items"}${urgent ? `, ${urgent} urgent` : ""}`;
  if ($("needs-summary").textContent !== summary) $("needs-summary").textContent = summary;
  const focusedRecord = document.activeElement && document.activeElement.closest
    && document.activeElement.closest("#needs-body") ? document.activeElement.getAttribute("href") : null;
  if (replaceIfChanged($("needs-body"), [renderNeeds(sections)]) && focusedRecord) {
    const again = [...$("needs-body").querySelectorAll("a")].find((a) => a.getAttribute("href") === focusedRecord);
    if (again) again.focus();
  }
}

// A patient's course -----------------------------------------------------------------------

async function openCourse(patientId) {
  if (!state || !patientId) return;
  const current = state;
  current.coursePatient = patientId;
  const body = $("course-body");
  body.replaceChildren(el("p", { class: "muted", text: "Loading the course\u2026" }));
  $("course").focus();
  try {
    const [patient, phq, gad, bookings] = await Promise.all([
      api.get(`/patients/${patientId}`).then((r) => r.body),
      api.list(`/patients/${patientId}/assessments`, { instrument: "PHQ-9" }),
      api.list(`/patients/${patientId}/assessments`, { instrument: "GAD-7" }),
      api.list("/bookings", { patient_id: patientId }),
    ]);
    if (state !== current || current.coursePatient !== patientId) return;
    const now = Date.now();
    const treatments = bookings.filter((b) => {
      const type = current.serviceTypes.get(b.service_type_id);
      return type && type.needs_chair && b.status !== "cancelled" && b.status !== "noshow";
    }).sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
    const seriesCount = new Map();
    const sessions = treatments.map((b) => {
      const type = current.serviceTypes.get(b.service_type_id);
      const at = Date.parse(b.start);
      const planned = b.status === "booked" || b.status === "pending";
      if (b.series_id) {
        const n = (seriesCount.get(b.series_id) || 0) + 1;
        seriesCount.set(b.series_id, n);
        return { at, series: true, planned, label: String(n),
          title: `Series session ${n}: ${type.name}, ${shortDate(at, current.homeZone)}${planned ? " (planned)" : ""}` };
      }
      return { at, series: false, planned, label: "T",
        title: `${type.name}, ${shortDate(at, current.homeZone)}${planned ? " (planned)" : ""}` };
    });
    body.replaceChildren(renderCourse({ patient, scores: { "PHQ-9": phq, "GAD-7": gad }, sessions,
      zone: current.homeZone, now }));
  } catch (error) {
    if (state === current) body.replaceChildren(el("p", { class: "error", text: `Could not load the course: ${error.message}` }));
  }
}

async function onPatientSearch(event) {
  event.preventDefault();
  if (!state) return;
  const text = $("patient-name").value.trim();
  const results = $("patient-results");
  if (text.length < 2) {
    results.replaceChildren(el("li", { class: "muted", text: "Type at least two letters." }));
    return;
  }
  try {
    const { body } = await api.get("/patients", { name: text, page_size: 10 });
    results.replaceChildren(...(body.length ? body.map((p) => el("li", {},
      el("button", { type: "button", class: "link-button", "data-course": p.id,
        text: `${p.first_name} ${p.last_name}, born ${p.birth_date}` })))
      : [el("li", { class: "muted", text: "No patient found." })]));
  } catch (error) {
    results.replaceChildren(el("li", { class: "error", text: `Search failed: ${error.message}` }));
  }
}

// Wiring ------------------------------------------------------------------------------------

function wire() {
  $("sign-in-form").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => {
    if (state && state.locations.length === 0) start(); // the first load failed: try again
    else {
      pollFeed();
      refreshNeeds();
    }
  });
  $("board-date").addEventListener("change", (e) => setDate(e.target.value));
  $("prev-day").addEventListener("click", () => state && setDate(addDays(state.date, -1)));
  $("next-day").addEventListener("click", () => state && setDate(addDays(state.date, 1)));
  $("today").addEventListener("click", () => state && setDate(localDate(Date.now(), state.homeZone)));
  $("locations").addEventListener("keydown", onTimelineKey);
  $("locations").addEventListener("click", (event) => {
    const block = event.target.closest(".visit");
    if (block) openVisit(block.dataset.bookingId, block);
  });
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-record]");
    if (link) {
      event.preventDefault();
      openRecord(link.dataset.record, link.dataset.swagger, link);
      return;
    }
    const course = event.target.closest("[data-course]");
    if (course) openCourse(course.dataset.course);
  });
  $("visit-course").addEventListener("click", (event) => {
    const id = event.currentTarget.dataset.patientId;
    closeDialog($("visit-dialog"));
    openCourse(id);
  });
  $("visit-close").addEventListener("click", () => closeDialog($("visit-dialog")));
  $("record-close").addEventListener("click", () => closeDialog($("record-dialog")));
  $("visit-dialog").addEventListener("close", onDialogClose);
  $("record-dialog").addEventListener("close", onDialogClose);
  $("patient-search").addEventListener("submit", onPatientSearch);
  window.addEventListener("hashchange", () => {
    const date = dateFromHash();
    if (date && state && date !== state.date) setDate(date);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") pollFeed();
  });
}

wire();
if (session.key() && ROLES.has(session.role(session.key()))) start();
else showSignIn();
