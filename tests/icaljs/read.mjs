// Read an iCalendar file with Mozilla's ical.js and print what it understood as JSON.
//
// Usage: node read.mjs FILE
// Prints {"calendar": {...}, "events": [...]}; on a parse error prints {"error": "..."}
// and exits with status 2.  DATE-TIME values are printed as UTC instants
// (YYYY-MM-DDTHH:MM:SSZ), converted with ical.js's own time zone logic (a TZID resolves
// against the calendar's VTIMEZONE components).  A floating time, including one whose
// TZID has no VTIMEZONE, has no instant: it is printed as YYYY-MM-DDTHH:MM:SS without a
// zone.  DATE values are printed as YYYY-MM-DD.

import { readFileSync } from "node:fs";
import ICAL from "ical.js";

/** Format an ICAL.Time (or null) as described above. */
function formatTime(time) {
  if (time === null || time === undefined) {
    return null;
  }
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  const date = `${pad(time.year, 4)}-${pad(time.month)}-${pad(time.day)}`;
  if (time.isDate) {
    return date;
  }
  if (time.zone === ICAL.Timezone.localTimezone) {
    return `${date}T${pad(time.hour)}:${pad(time.minute)}:${pad(time.second)}`;
  }
  return time.toJSDate().toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The first value of a property as a string, or null when absent. */
function text(component, name) {
  const value = component.getFirstPropertyValue(name);
  return value === null || value === undefined ? null : String(value);
}

/** The first value of a time property, formatted, or null when absent. */
function time(component, name) {
  return formatTime(component.getFirstPropertyValue(name));
}

/** Every value of every property with this name, as strings. */
function allValues(component, name) {
  return component
    .getAllProperties(name)
    .flatMap((prop) => prop.getValues())
    .map((value) => String(value));
}

/**
 * The VALUE parameter of a property ical.js does not know (such as RFC 7986's
 * REFRESH-INTERVAL): the parser turns VALUE=X into the property's type and drops the
 * parameter, and an unknown property without one has the type "unknown".
 */
function valueParam(prop) {
  const explicit = prop.getParameter("value");
  if (explicit) {
    return String(explicit).toUpperCase();
  }
  return prop.type === "unknown" ? null : prop.type.toUpperCase();
}

/** The canonical form [-]P[nD][T[nH][nM][nS]] (PT0S for zero); readers.py agrees. */
function formatDuration(total) {
  if (total === 0) {
    return "PT0S";
  }
  const sign = total < 0 ? "-" : "";
  let rest = Math.abs(total);
  const days = Math.floor(rest / 86400);
  rest -= days * 86400;
  const parts = [[Math.floor(rest / 3600), "H"], [Math.floor((rest % 3600) / 60), "M"], [rest % 60, "S"]];
  const clock = parts.filter(([n]) => n).map(([n, unit]) => `${n}${unit}`).join("");
  return `${sign}P${days ? `${days}D` : ""}${clock ? `T${clock}` : ""}`;
}

/** REFRESH-INTERVAL as a canonical duration, or its raw text if it is not one. */
function refreshInterval(value) {
  let duration = value;
  if (!(value instanceof ICAL.Duration)) {
    try {
      duration = ICAL.Duration.fromString(String(value));
    } catch {
      return String(value);
    }
  }
  return formatDuration(duration.toSeconds());
}

function readEvent(vevent) {
  const event = new ICAL.Event(vevent);
  const start = event.startDate;
  let end = null;
  if (start) {
    end = formatTime(event.endDate);
  }
  const sequence = vevent.getFirstPropertyValue("sequence");
  return {
    uid: event.uid ?? null,
    summary: event.summary ?? null,
    description: event.description ?? null,
    location: event.location ?? null,
    url: text(vevent, "url"),
    status: text(vevent, "status"),
    sequence: sequence === null || sequence === undefined ? null : Number(sequence),
    categories: allValues(vevent, "categories"),
    attach: allValues(vevent, "attach"),
    dtstart: formatTime(start),
    dtend: end,
    dtstamp: time(vevent, "dtstamp"),
    "last-modified": time(vevent, "last-modified"),
    dtstart_is_date: Boolean(start && start.isDate),
  };
}

function read(source) {
  const jcal = ICAL.parse(source);
  if (jcal.length === 0) {
    throw new Error("no component found");
  }
  if (Array.isArray(jcal[0])) {
    throw new Error(`${jcal.length} top-level components, expected one VCALENDAR`);
  }
  const root = new ICAL.Component(jcal);
  if (root.name !== "vcalendar") {
    throw new Error(`top-level component is ${root.name.toUpperCase()}, not VCALENDAR`);
  }
  const refresh = root.getFirstProperty("refresh-interval");
  return {
    calendar: {
      version: text(root, "version"),
      prodid: text(root, "prodid"),
      name: text(root, "name"),
      "x-wr-calname": text(root, "x-wr-calname"),
      "refresh-interval": refresh ? refreshInterval(refresh.getFirstValue()) : null,
      "refresh-interval-value-param": refresh ? valueParam(refresh) : null,
      "x-published-ttl": text(root, "x-published-ttl"),
      method: text(root, "method"),
    },
    events: root.getAllSubcomponents("vevent").map(readEvent),
  };
}

let result;
try {
  result = read(readFileSync(process.argv[2], "utf8"));
} catch (error) {
  process.stdout.write(JSON.stringify({ error: String(error?.message ?? error) }) + "\n");
  process.exit(2);
}
process.stdout.write(JSON.stringify(result) + "\n");
