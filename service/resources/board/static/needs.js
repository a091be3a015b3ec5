// The "needs a person now" panel: one short list per kind of thing, each item linking to
// its record in the API (shown in the page with the key) and to Swagger UI.

import { el } from "./timeline.js";

/**
 * sections: [{key, title, items: [{text, meta, record, swagger, level}], error}]
 * level: "urgent" | "overdue" | "due" | "info"
 */
export function renderNeeds(sections) {
  const body = el("div", { class: "needs-sections" });
  const clear = el("ul", { class: "needs-clear", "aria-label": "Nothing waiting" });
  for (const section of sections) {
    if (!section.error && section.items.length === 0) {
      clear.append(el("li", { "data-needs": section.key, text: section.none }));
      continue;
    }
    const headingId = `needs-${section.key}`;
    const count = section.items.length;
    const box = el("section", { class: "needs-section",
      "data-needs": section.key, "aria-labelledby": headingId });
    box.append(el("h3", { id: headingId }, document.createTextNode(section.title),
      el("span", { class: "count", text: section.error ? "" : ` ${count}` })));
    if (section.error) {
      box.append(el("p", { class: "muted", text: section.error }));
    } else {
      const list = el("ul");
      for (const item of section.items) {
        const li = el("li", { class: `need level-${item.level || "info"}` });
        if (item.level === "urgent" || item.level === "overdue") {
          li.append(el("span", { class: "need-tag", text: item.level === "urgent" ? "Urgent" : "Overdue" }));
        }
        li.append(el("a", { href: item.record, "data-record": item.record,
          "data-swagger": item.swagger || "", text: item.text }));
        if (item.meta) li.append(el("span", { class: "need-meta", text: item.meta }));
        if (item.swagger) {
          li.append(el("a", { class: "swagger-link", href: item.swagger, target: "_blank",
            rel: "noopener noreferrer", text: "Swagger UI",
            "aria-label": `${item.text}: open in Swagger UI` }));
        }
        list.append(li);
      }
      box.append(list);
    }
    body.append(box);
  }
  if (clear.childElementCount) body.append(clear);
  return body;
}
