// What the board derives from the API's records where no endpoint answers it yet (pure
// functions of plain values and "now", so a test can call them in the browser).

const MINUTE = 60000;

/** The REMS "about 40 minutes after the dose" reading counts in this window (minutes). */
export const FORTY_MINUTE_WINDOW = [30, 50];
/** A visit not checked in this long after its start shows as "not arrived". */
export const NOT_ARRIVED_AFTER_MINUTES = 10;
/** The 40-minute reading is listed this long before its window opens. */
export const VITALS_HEADS_UP_MINUTES = 5;

export const STATUS_LABELS = {
  "pending": "pending",
  "booked": "booked",
  "checked-in": "checked in",
  "in-monitoring": "in monitoring",
  "ready-for-discharge": "ready for discharge",
  "fulfilled": "fulfilled",
  "no-show": "no-show",
  "cancelled": "cancelled",
};

/** Severity bands of the scores the service computes (inclusive ranges). */
export const INSTRUMENTS = {
  "PHQ-9": {
    max: 27,
    bands: [["minimal", 0, 4], ["mild", 5, 9], ["moderate", 10, 14],
      ["moderately severe", 15, 19], ["severe", 20, 27]],
  },
  "GAD-7": {
    max: 21,
    bands: [["minimal", 0, 4], ["mild", 5, 9], ["moderate", 10, 14], ["severe", 15, 21]],
  },
};

export function bandOf(instrument, total) {
  const band = INSTRUMENTS[instrument].bands.find(([, low, high]) => total >= low && total <= high);
  return band ? band[0] : "";
}

const at = (text) => (text ? Date.parse(text) : NaN);

/** The end of the chair and patient hold: the dose plus monitoring or recovery. */
export function holdEnd(booking) {
  const until = at(booking.hold_until);
  return Number.isNaN(until) ? at(booking.end) : until;
}

/** A treatment keeps the patient in a chair after the dose (monitoring or recovery). */
export function hasAftercare(booking) {
  return holdEnd(booking) > at(booking.end);
}

/**
 * The status the board shows: the booking's own, refined by the clock for a checked-in
 * treatment: "in monitoring" once the dose is over, "ready for discharge" once the
 * monitoring or recovery time is over.
 */
export function boardStatus(booking, now) {
  switch (booking.status) {
    case "cancelled": return "cancelled";
    case "noshow": return "no-show";
    case "fulfilled": return "fulfilled";
    case "pending": return "pending";
    case "checked-in":
      if (hasAftercare(booking)) {
        if (now >= holdEnd(booking)) return "ready-for-discharge";
        if (now >= at(booking.end)) return "in-monitoring";
      }
      return "checked-in";
    default: return "booked";
  }
}

/** Why a booking needs a person: ``attention`` (the clinical gate it no longer passes, set
 * when a clearance, screening, REMS enrolment or license changed; cleared when a provider
 * resolves it) and ``vitals_alert_at`` (a reading beyond the watch limits during the stay). */
export function flagsOf(booking) {
  const reasons = [];
  if (typeof booking.attention === "string" && booking.attention) {
    reasons.push(booking.attention.replaceAll("_", " "));
  }
  if (booking.vitals_alert_at) reasons.push("vitals beyond limits");
  return reasons;
}

/** A booked visit that started a while ago and nobody checked in. */
export function notArrived(booking, now) {
  return (booking.status === "booked" || booking.status === "pending")
    && now >= at(booking.start) + NOT_ARRIVED_AFTER_MINUTES * MINUTE
    && now < holdEnd(booking);
}

/**
 * Readings a checked-in treatment still needs, as {kind, label, from, until, overdue}:
 * before dosing; for esketamine (REMS) the reading 30-50 minutes after the dose; and at
 * discharge once the monitoring or recovery time is over.
 */
export function vitalsDue(booking, serviceType, readings, now) {
  if (booking.status !== "checked-in" || !serviceType || !serviceType.needs_chair) return [];
  const start = at(booking.start);
  const has = (phase, test = () => true) => readings.some((r) => r.phase === phase && test(r));
  const due = [];
  if (!has("pre")) {
    due.push({ kind: "pre", label: "Reading before dosing", from: at(booking.checked_in_at) || start,
      until: start, overdue: now > start });
  }
  if (serviceType.requires_rems) {
    const [low, high] = FORTY_MINUTE_WINDOW;
    const from = start + low * MINUTE;
    const until = start + high * MINUTE;
    const taken = has("during", (r) => r.minutes_after_dose >= low && r.minutes_after_dose <= high);
    if (!taken && now >= from - VITALS_HEADS_UP_MINUTES * MINUTE) {
      due.push({ kind: "forty-minutes", label: `Reading ${low}\u2013${high} min after the dose`,
        from, until, overdue: now > until });
    }
  }
  const over = holdEnd(booking);
  if (now >= over && !has("discharge")) {
    due.push({ kind: "discharge", label: "Discharge reading (ride home)", from: over, until: null,
      overdue: false });
  }
  return due;
}

/** Open alerts, urgent first, then the oldest first. */
export function sortAlerts(alerts) {
  return alerts
    .filter((a) => !a.acknowledged_at)
    .sort((a, b) => (Number(b.urgent) - Number(a.urgent)) || (at(a.raised_at) - at(b.raised_at)));
}

/** Bookings by id, applying a change feed page: newer versions win, tombstones remove. */
export function applyChanges(bookings, items) {
  let changed = 0;
  for (const item of items) {
    const known = bookings.get(item.id);
    if (known && known.version > item.version) continue;
    if (item.deleted || item.status === "cancelled") {
      if (bookings.delete(item.id)) changed += 1;
    } else {
      bookings.set(item.id, item);
      changed += 1;
    }
  }
  return changed;
}

/**
 * The lanes of one location's day: one per chair (1..chairs, plus any chair a visit names
 * beyond them, plus "no chair yet"), then one per provider for visits without a chair
 * (consultations, telehealth), by provider name. Each lane's visits are in time order.
 */
export function lanesFor(location, visits, serviceTypes, providers) {
  const chairs = new Map();
  for (let n = 1; n <= (location.chairs || 0); n += 1) {
    chairs.set(`chair-${n}`, { key: `chair-${n}`, label: `Chair ${n}`, kind: "chair", order: n, visits: [] });
  }
  const people = new Map();
  for (const booking of visits) {
    const type = serviceTypes.get(booking.service_type_id);
    if (booking.chair_number != null || (type && type.needs_chair)) {
      const number = booking.chair_number;
      const key = number != null ? `chair-${number}` : "chair-none";
      if (!chairs.has(key)) {
        chairs.set(key, { key, label: number != null ? `Chair ${number}` : "No chair yet",
          kind: "chair", order: number != null ? number : 1e6, visits: [] });
      }
      chairs.get(key).visits.push(booking);
    } else {
      const key = `provider-${booking.provider_id}`;
      if (!people.has(key)) {
        const provider = providers.get(booking.provider_id);
        people.set(key, { key, label: provider ? provider.name : "Provider", kind: "provider",
          visits: [] });
      }
      people.get(key).visits.push(booking);
    }
  }
  const byStart = (a, b) => at(a.start) - at(b.start);
  const lanes = [...[...chairs.values()].sort((a, b) => a.order - b.order),
    ...[...people.values()].sort((a, b) => a.label.localeCompare(b.label))];
  for (const lane of lanes) lane.visits.sort(byStart);
  return lanes;
}

/** The hours a day's timeline shows: 08:00-18:00, widened to every visit on it. */
export function hourRange(startHours, endHours) {
  let first = 8;
  let last = 18;
  for (const h of startHours) first = Math.min(first, Math.floor(h));
  for (const h of endHours) last = Math.max(last, Math.ceil(h));
  return [Math.max(0, first), Math.min(24, Math.max(last, first + 1))];
}
