// Tiny DOM helpers. Text always goes through textContent: nothing this dashboard shows
// (engine output, objectives, audit details, error messages) is ever parsed as HTML.

/**
 * Creates an element. attrs: plain attributes (class, id, type, aria-*, data-*, …), "text"
 * for textContent, "on" for {event: handler}; children: nodes or strings (as text).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'style' || k.startsWith('on')) throw new Error('inline style and handler attributes are not allowed');
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces el's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error('missing element #' + id);
  return el;
}

/** Shows a message in a status or alert region (cleared with an empty text). */
export function say(el, text, kind = 'info') {
  el.textContent = text || '';
  el.dataset.kind = kind;
  el.hidden = !text;
}

/** "12:03:04" from an ISO time, or "" when unparsable. */
export function clock(iso) {
  const t = Date.parse(iso || '');
  if (!Number.isFinite(t)) return '';
  return new Date(t).toLocaleTimeString([], { hour12: false });
}

/** "2026-12-07T13:45:01Z": an ISO time in UTC to the second, or the input when unparsable. */
export function utc(iso) {
  const t = Date.parse(iso || '');
  if (!Number.isFinite(t)) return iso ? String(iso) : '';
  return new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A <time> element showing utc(iso), with the full value in its datetime attribute. A narrow
 * column may break it before the "T" only (between date and time), never inside either.
 */
export function utcTime(iso) {
  const text = utc(iso);
  const at = text.indexOf('T');
  if (at < 0) return h('time', { datetime: iso ? String(iso) : '', text });
  return h('time', { class: 'utc', datetime: String(iso) },
    h('span', { text: text.slice(0, at) }), h('wbr'), h('span', { text: text.slice(at) }));
}

/**
 * Names each body cell after its column header (data-label), for the stacked phone layout of
 * table.stack; a cell spanning columns (an empty-table message) gets none. Empty cells are
 * marked data-empty (the stacked layout leaves them out).
 */
export function labelCells(table) {
  const heads = [...table.tHead.rows[0].cells].map((c) => c.textContent.trim());
  for (const row of table.tBodies[0].rows) {
    [...row.cells].forEach((c, i) => {
      if (c.colSpan > 1 || !heads[i]) c.removeAttribute('data-label');
      else c.dataset.label = heads[i];
      c.toggleAttribute('data-empty', c.colSpan === 1 && c.childElementCount === 0 && c.textContent.trim() === '');
    });
  }
}

export function shortId(id) {
  return typeof id === 'string' && id.length > 8 ? id.slice(0, 8) : String(id ?? '');
}
