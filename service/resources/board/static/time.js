// Wall-clock time in an IANA zone, from the browser's own zone data (Intl): no library.
// Instants are milliseconds since the epoch; local dates are "YYYY-MM-DD" strings.

const formatters = new Map();

function partsFormatter(zone) {
  let formatter = formatters.get(zone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
    formatters.set(zone, formatter);
  }
  return formatter;
}

/** The wall-clock fields of an instant in a zone. */
export function zonedParts(ms, zone) {
  const fields = {};
  for (const part of partsFormatter(zone).formatToParts(new Date(ms))) {
    if (part.type !== "literal") fields[part.type] = Number(part.value);
  }
  return {
    year: fields.year, month: fields.month, day: fields.day,
    hour: fields.hour === 24 ? 0 : fields.hour, minute: fields.minute, second: fields.second,
  };
}

/** The zone's offset from UTC at an instant, in milliseconds (Phoenix: -7 h). */
export function offsetAt(ms, zone) {
  const p = zonedParts(ms, zone);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/** The instant a wall-clock time in a zone names (the earlier one when a DST change makes
 *  the time occur twice; an instant beside the gap when it skips the time). */
export function zonedToInstant(dateText, hour, minute, zone) {
  const [y, m, d] = dateText.split("-").map(Number);
  const guess = Date.UTC(y, m - 1, d, hour, minute);
  const first = guess - offsetAt(guess, zone);
  const second = guess - offsetAt(first, zone);
  return Math.min(first, second);
}

const pad = (n) => String(n).padStart(2, "0");

/** "YYYY-MM-DD" of an instant in a zone. */
export function localDate(ms, zone) {
  const p = zonedParts(ms, zone);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

/** "HH:MM" of an instant in a zone. */
export function localTime(ms, zone) {
  const p = zonedParts(ms, zone);
  return `${pad(p.hour)}:${pad(p.minute)}`;
}

/** The date after (or before, with -1) a "YYYY-MM-DD" date. */
export function addDays(dateText, days) {
  const [y, m, d] = dateText.split("-").map(Number);
  const next = new Date(Date.UTC(y, m - 1, d + days));
  return `${next.getUTCFullYear()}-${pad(next.getUTCMonth() + 1)}-${pad(next.getUTCDate())}`;
}

/** [start, end) of a local date in a zone, as instants (23 or 25 hours on DST days). */
export function dayBounds(dateText, zone) {
  return [zonedToInstant(dateText, 0, 0, zone), zonedToInstant(addDays(dateText, 1), 0, 0, zone)];
}

/** "UTC-07:00" for the zone at an instant. */
export function offsetLabel(ms, zone) {
  const minutes = Math.round(offsetAt(ms, zone) / 60000);
  const sign = minutes < 0 ? "\u2212" : "+";
  const abs = Math.abs(minutes);
  return `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** "Tue 8 Dec 2026" for a local date. */
export function longDate(dateText) {
  const [y, m, d] = dateText.split("-").map(Number);
  return new Intl.DateTimeFormat("en-US", {
    timeZone: "UTC", weekday: "short", day: "numeric", month: "short", year: "numeric",
  }).format(new Date(Date.UTC(y, m - 1, d, 12)));
}

/** "Dec 8" of an instant in a zone. */
export function shortDate(ms, zone) {
  return new Intl.DateTimeFormat("en-US", { timeZone: zone, month: "short", day: "numeric" })
    .format(new Date(ms));
}
