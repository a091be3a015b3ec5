// One location's day as a timeline: an hour axis in the location's zone, one lane per
// chair and one per provider, a block per visit, gridlines and the "now" line.

import { boardStatus, flagsOf, hasAftercare, holdEnd, hourRange, lanesFor, STATUS_LABELS } from "./rules.js";
import { dayBounds, localDate, localTime, longDate, offsetLabel, zonedParts, zonedToInstant } from "./time.js";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

export { el };

const hoursOf = (ms, zone, date) => {
  const p = zonedParts(ms, zone);
  const day = localDate(ms, zone);
  if (day < date) return 0;
  if (day > date) return 24;
  return p.hour + p.minute / 60;
};

/** The words a block shows for its patient: first name and last initial (the full name is
 *  only in the visit's details). */
export function shortName(patient) {
  if (patient === undefined || patient === "loading") return "\u2026";
  if (!patient || patient.hidden) return "Patient";
  const last = patient.last_name ? ` ${patient.last_name[0]}.` : "";
  return `${patient.first_name}${last}`;
}

export function aftercareWord(type) {
  return type && type.requires_rems ? "monitoring" : "recovery";
}

/**
 * Render a location's day.
 * ctx: {location, date, visits, serviceTypes, providers, patients, holds, now}
 */
export function renderLocation(ctx) {
  const { location, date, visits, serviceTypes, providers, patients, holds, now } = ctx;
  const zone = location.timezone;
  const headingId = `loc-${location.id}`;
  const [dayStart, dayEnd] = dayBounds(date, zone);
  const [first, last] = hourRange(
    visits.map((b) => hoursOf(Date.parse(b.start), zone, date)),
    visits.map((b) => hoursOf(holdEnd(b), zone, date)),
  );
  const windowStart = first === 0 ? dayStart : zonedToInstant(date, first, 0, zone);
  const windowEnd = last === 24 ? dayEnd : zonedToInstant(date, last, 0, zone);
  const span = windowEnd - windowStart;
  const x = (ms) => Math.min(100, Math.max(0, ((ms - windowStart) / span) * 100));

  const count = visits.length;
  const section = el("section", { class: "location", "data-location": location.id,
    "aria-labelledby": headingId });
  section.append(
    el("h3", { id: headingId, text: location.name }),
    el("p", { class: "zone",
      text: `${longDate(date)} \u00b7 ${zone} (${offsetLabel(dayStart + 12 * 3600000, zone)}) \u00b7 `
        + `${count} ${count === 1 ? "visit" : "visits"}` }),
  );

  const lanes = lanesFor(location, visits, serviceTypes, providers);
  if (lanes.length === 0) {
    section.append(el("p", { class: "muted", text: "No visits on this day." }));
    return section;
  }

  const timeline = el("div", { class: "timeline", role: "group",
    "aria-label": `${location.name}, ${longDate(date)}` });
  // Hours keep a readable width: a long day scrolls sideways instead of shrinking.
  timeline.style.minWidth = `calc(var(--label-width) + ${(span / 3600000).toFixed(2)} * var(--hour-width))`;
  const axis = el("div", { class: "axis", "aria-hidden": "true" });
  const overlay = el("div", { class: "overlay", "aria-hidden": "true" });
  for (let hour = first; hour <= last; hour += 1) {
    const instant = hour === 24 ? dayEnd : zonedToInstant(date, hour, 0, zone);
    const left = x(instant);
    const tick = el("span", { class: hour === first ? "tick first" : "tick",
      text: hour < last ? `${String(hour).padStart(2, "0")}:00` : "" });
    tick.style.left = `${left}%`;
    axis.append(tick);
    const line = el("span", { class: "gridline" });
    line.style.left = `${left}%`;
    overlay.append(line);
  }
  timeline.append(el("div", { class: "axis-row" }, el("div", { class: "lane-label" }), axis));

  for (const lane of lanes) {
    const n = lane.visits.length;
    const row = el("div", { class: `lane lane-${lane.kind}`, "data-lane": lane.key, role: "group",
      "aria-label": `${lane.label}: ${n} ${n === 1 ? "visit" : "visits"}` });
    const track = el("div", { class: "track" });
    for (const booking of lane.visits) {
      track.append(visitBlock(booking, { lane, zone, x, serviceTypes, patients, holds, now }));
    }
    row.append(el("div", { class: "lane-label", title: lane.label, text: lane.label }), track);
    timeline.append(row);
  }

  if (now >= windowStart && now < windowEnd) {
    const line = el("span", { class: "now-line", "data-now": localTime(now, zone) },
      el("span", { class: x(now) > 85 ? "now-label flip" : "now-label", text: `now ${localTime(now, zone)}` }));
    line.style.left = `${x(now)}%`;
    overlay.append(line);
  }
  timeline.append(overlay);
  section.append(el("div", { class: "scroller" }, timeline));
  return section;
}

function visitBlock(booking, { lane, zone, x, serviceTypes, patients, holds, now }) {
  const type = serviceTypes.get(booking.service_type_id);
  const start = Date.parse(booking.start);
  const end = Date.parse(booking.end);
  const chairLane = lane.kind === "chair";
  const until = chairLane ? holdEnd(booking) : end;
  const status = boardStatus(booking, now);
  const flags = flagsOf(booking);
  const onHold = (holds.get(booking.id) || []).some((h) => h.active);
  const who = shortName(patients.get(booking.patient_id));
  const what = type ? type.name : "Visit";
  const brief = what.replace(/\s*\([^)]*\)/g, "");
  const times = `${localTime(start, zone)}\u2013${localTime(end, zone)}`;
  const aftercare = chairLane && hasAftercare(booking)
    ? `, ${aftercareWord(type)} until ${localTime(until, zone)}` : "";
  const marks = [...(onHold ? ["on hold"] : []), ...flags.map((f) => `flagged: ${f}`)];
  const label = `${times}${aftercare}, ${who}, ${what}, ${STATUS_LABELS[status]}`
    + (marks.length ? `, ${marks.join(", ")}` : "");

  const block = el("button", {
    type: "button",
    class: `visit status-${status}${marks.length ? " flagged" : ""}`,
    "data-booking-id": booking.id,
    "data-status": status,
    "data-start": localTime(start, zone),
    "data-end": localTime(end, zone),
    "data-until": localTime(until, zone),
    "aria-label": label,
    title: label,
  });
  const left = x(start);
  const right = x(until);
  block.style.left = `${left}%`;
  block.style.width = `${Math.max(right - left, 0.6)}%`;
  if (chairLane && until > end) {
    const dose = el("span", { class: "dose", "aria-hidden": "true" });
    dose.style.width = `${Math.max(0, Math.min(100, ((end - start) / (until - start)) * 100))}%`;
    block.append(dose);
  } else {
    block.classList.add("no-aftercare");
  }
  block.append(el("span", { class: "visit-text", "aria-hidden": "true" },
    el("span", { class: "visit-line" },
      marks.length ? el("span", { class: "flag-mark", text: "\u2691 " }) : null,
      el("span", { class: "visit-time", text: localTime(start, zone) }),
      document.createTextNode(" "),
      el("span", { class: "visit-who", text: who })),
    el("span", { class: "visit-line visit-what", text: brief }),
    el("span", { class: "visit-line visit-status", text: STATUS_LABELS[status] })));
  return block;
}

/** Scroll a location's timeline (when wider than its box) to the "now" line or, on another
 *  day, to its first visit. */
export function scrollToAnchor(section) {
  const scroller = section.querySelector(".scroller");
  if (!scroller || scroller.scrollWidth <= scroller.clientWidth) return;
  const anchor = section.querySelector(".now-line") || section.querySelector(".visit");
  if (!anchor) return;
  const offset = anchor.getBoundingClientRect().left - scroller.getBoundingClientRect().left;
  scroller.scrollLeft += offset - scroller.clientWidth / 3;
}

/** Arrow keys between visits: left/right within a lane, up/down to the nearest visit in
 *  the lane above or below (across locations); Home/End to a lane's first or last. */
export function onTimelineKey(event) {
  const block = event.target.closest && event.target.closest(".visit");
  if (!block) return;
  const lane = block.closest(".lane");
  const inLane = [...lane.querySelectorAll(".visit")];
  const index = inLane.indexOf(block);
  let target = null;
  if (event.key === "ArrowRight") target = inLane[index + 1];
  else if (event.key === "ArrowLeft") target = inLane[index - 1];
  else if (event.key === "Home") target = inLane[0];
  else if (event.key === "End") target = inLane[inLane.length - 1];
  else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    const lanes = [...document.querySelectorAll("#locations .lane")]
      .filter((l) => l.querySelector(".visit"));
    const step = event.key === "ArrowDown" ? 1 : -1;
    const next = lanes[lanes.indexOf(lane) + step];
    if (next) {
      const mid = block.getBoundingClientRect().left;
      target = [...next.querySelectorAll(".visit")].reduce((best, candidate) => {
        const distance = Math.abs(candidate.getBoundingClientRect().left - mid);
        return !best || distance < best.distance ? { node: candidate, distance } : best;
      }, null)?.node;
    }
  } else {
    return;
  }
  event.preventDefault();
  if (target) target.focus();
}
