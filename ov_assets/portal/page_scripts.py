"""The scripts the page objects (``pages``) evaluate in the browser: waits that prove what is on
screen came from the answer awaited, the login control's finder, and readers of rows and
details. Selectors are passed in as arguments, so these hold no selector of their own."""

# In-browser wait for the results of one answered XHR: the rows on screen must be the ones
# that answer holds (each row's radicado appears in its body), as many as the range label says,
# and the label must start where expected. The label alone proves nothing: it moves at once.
ROWS_READY_JS = r"""
([body, expectFirst, pw, rowSel, cellSel, rangeSel]) => {
  if (document.querySelector(pw)) return 'login';
  const label = document.querySelector(rangeSel);
  const text = label ? label.textContent.replace(/\s+/g, ' ').trim() : '';
  const rows = Array.from(document.querySelectorAll(rowSel));
  const m = text.match(/(\d+)\s*-\s*(\d+)\s+de\s+(\d+)/);
  if (!m) return rows.length === 0 && /de\s+0\b/.test(text) ? 'ok:0:0:0' : false;
  const [first, last, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (expectFirst !== null && total && first !== expectFirst) return false;
  if (rows.length !== (total ? last - first + 1 : 0)) return false;
  for (const tr of rows) {
    const cell = tr.querySelector(cellSel);
    const rad = cell ? cell.textContent.trim() : '';
    if (!rad || !new RegExp('(^|[^0-9A-Za-z])' + rad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '($|[^0-9A-Za-z])').test(body)) return false;
  }
  return 'ok:' + first + ':' + last + ':' + total;
}
"""

# In-browser wait for a detail whose XHR answered: its radicado shows, with a fecha and a
# status (values render after the XHR; a stale view shows another radicado or none).
DETAIL_READY_JS = r"""
([expected, pw, labelSel, radLabel, fechaLabel, estadoLabel, toastSel]) => {
  if (document.querySelector(pw)) return 'login';
  for (const t of document.querySelectorAll(toastSel)) {
    if (!t.dataset.ovSeen && /error|ocurri/i.test(t.textContent)) return 'toast';
  }
  const values = {};
  for (const td of document.querySelectorAll(labelSel)) {
    const label = td.textContent.replace(/\s+/g, ' ').trim();
    const v = td.nextElementSibling;
    if (!(label in values) && v) values[label] = v.textContent.trim();
  }
  return values[radLabel] === expected && values[fechaLabel] && values[estadoLabel] ? 'ok' : false;
}
"""

# Toasts already on screen belong to earlier actions: marked so that only new ones count.
MARK_TOASTS_JS = "sel => document.querySelectorAll(sel).forEach(t => { t.dataset.ovSeen = '1'; })"

# The login page's submit control, whatever its tag or type: in the password's form, the
# clickable element after the password whose id, name, href or text says "login" (else any
# such element, else the first one after the password); never a link to another page
# (forgotten password, registration, a plain href).
FIND_SUBMIT_JS = r"""
(pw) => {
  const field = document.querySelector(pw);
  if (!field) return false;
  const scope = field.form || document;
  const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const all = Array.from(scope.querySelectorAll("button, input[type=submit], input[type=button], input[type=image], a[href], [role=button], [onclick]")).filter(visible);
  const text = el => [el.id, el.getAttribute('name'), el.getAttribute('href'), el.value, el.textContent].join(' ');
  const away = /olvid|recuper|registr|forgot|ayuda|help/i;
  const says = /cmdLogin|login|ingres|iniciar|entrar|acceder|sign.?in/i;
  const after = el => field.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING;
  const navigates = el => el.tagName === 'A' && !/^\s*(javascript:|#|$)/i.test(el.getAttribute('href') || '');
  const cands = all.filter(el => !away.test(text(el)) && !navigates(el));
  const pick = cands.find(el => after(el) && says.test(text(el))) || cands.find(el => says.test(text(el)))
    || cands.find(after);
  if (!pick) return false;
  document.querySelectorAll('[data-ov-submit]').forEach(el => el.removeAttribute('data-ov-submit'));
  pick.setAttribute('data-ov-submit', '1');
  return true;
}
"""

# Each detail label with the value cell beside it (null when that cell is not a value).
READ_DETAIL_JS = r"""
([labelSel]) => Array.from(document.querySelectorAll(labelSel)).map(td => {
  const v = td.nextElementSibling;
  return [td.textContent, v && v.matches('td.ng-binding') ? v.textContent : null];
})
"""

# Each result row: its cells' texts and its eye link's href (the detail id).
READ_ROWS_JS = r"""
([rowSel, cellSel, eyeSel]) => Array.from(document.querySelectorAll(rowSel)).map(tr => {
  const a = tr.querySelector(eyeSel);
  return {cells: Array.from(tr.querySelectorAll(cellSel)).map(td => td.textContent.trim()),
          href: a ? a.getAttribute('href') : null};
})
"""
