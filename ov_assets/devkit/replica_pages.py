"""The replica portal's pages (CONTRACT §9): the DotNetNuke login page with its script-driven
postback, and the AngularJS Material-like list/detail app, as HTML and script; kept apart from
the HTTP server in ``replica`` so each can be read whole."""

from __future__ import annotations

import base64
import html
import json
import secrets
import urllib.parse

from ov_assets.core.contract import EMPRESA_DISPLAY, EMPRESAS

USER_INPUT = "dnn$ctr$Login$Login_DotNetNuke.Membership.GatewayMembershipProvider$txtUsername"
PASSWORD_INPUT = "dnn$ctr$Login$Login_DotNetNuke.Membership.GatewayMembershipProvider$txtPassword"
ENCODED_FLAG = "dnn$ctr$Login$Login_DNN$hfPasswordEncoded"
ESTADOS = ("Radicado", "En trámite", "Pendiente", "Finalizado")

# Detail labels, in the order the page shows them. Decoys (labels that contain a real label as
# a substring, or that a substring match of a real label would hit) come first on purpose.
DETAIL_LABELS: tuple[tuple[str, str | None], ...] = (
    ("Fecha de respuesta", None),
    ("Fecha límite de respuesta", None),
    ("N° Radicado PQR", "numero_radicado"),
    ("Estado Solicitud", "estado_solicitud"),
    ("Fecha", "fecha"),
    ("Tipo de PQR", "tipo_pqr"),
    ("Correo electrónico", "correo_electronico"),
    ("NIC", "nic"),
    ("Documento de identidad", "documento_identidad"),
    ("Nombres y Apellidos", "nombres_apellidos"),
    ("Lectura", "lectura"),
    ("Teléfono", "telefono"),
    ("Celular", "celular"),
    ("Canal de respuesta", "canal_respuesta"),
    ("Documento/prueba", "documento_prueba"),
    ("Cuerpo de la reclamación", "cuerpo_reclamacion"),
    ("Estado Solicitud SGC", None),
    ("Finalizar", "finalizar"),
    ("Adjuntar archivo", "adjuntar_archivo"),
    ("Comentarios", "comentarios"),
    ("Comentarios internos", None),
)
# Results table columns (CONTRACT §9), field per column.
LIST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Radicado", "numero_radicado"),
    ("Fecha", "fecha"),
    ("Estado", "estado_solicitud"),
    ("Tipo PQR", "tipo_pqr"),
    ("NIC", "nic"),
    ("Nombres", "nombres_apellidos"),
    ("Teléfono", "telefono"),
    ("Celular", "celular"),
    ("Correo", "correo_electronico"),
    ("Documento", "documento_identidad"),
    ("Canal", "canal_respuesta"),
)


_STYLE = """
body{font-family:sans-serif;margin:0}
#myModal{position:fixed;inset:0;background:rgba(0,0,0,.6);z-index:1000;display:flex;
  align-items:center;justify-content:center}
#myModal .modal-content{background:#fff;padding:2em;width:60%}
.hidden{display:none!important}
md-select{display:inline-block;border-bottom:1px solid #999;min-width:10em;cursor:pointer}
.md-select-menu-container{position:absolute;background:#fff;border:1px solid #999;z-index:50}
md-option{display:block;padding:.3em 1em;cursor:pointer}
td.md-cell{padding:2px 6px;border-bottom:1px solid #ddd}
td.text-td-label{font-weight:bold;padding-right:1em}
div.link-archivo{color:#06c;cursor:pointer;text-decoration:underline}
md-toast{position:fixed;bottom:1em;left:1em;background:#333;color:#fff;padding:1em;z-index:2000}
.md-datepicker-calendar-pane{position:absolute;background:#fff;border:1px solid #999;z-index:60;padding:.5em}
td.md-calendar-date{cursor:pointer;padding:2px 6px}
md-progress-linear{display:block;height:4px;background:#3f51b5}
"""


def return_url(empresa: str, query: dict[str, list[str]]) -> str:
    """The ``returnurl`` the login page was opened with, when it is a path of this portal."""
    back = (query.get("returnurl") or [""])[0]
    return back if back.startswith(f"/{empresa}/") and "//" not in back else ""


def posted_password(empresa: str, form: dict[str, str]) -> str | None:
    """The password of a login postback, or None when the post is not the page's own script
    (a plain form submit): Air-e's link posts back ``cmdLogin``; Afinia's button posts back
    with the password base64-encoded and the encoded flag set."""
    if "Login" not in form.get("__EVENTTARGET", ""):
        return None
    password = form.get(PASSWORD_INPUT, "")
    if empresa != "afinia":
        return password
    if form.get(ENCODED_FLAG) != "1":
        return None
    try:
        return base64.b64decode(password, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def index_page() -> str:
    """The root page: a login link per empresa, for a person trying the demo."""
    links = "".join(f'<li><a href="/{e}/login">{EMPRESA_DISPLAY[e]}</a></li>' for e in EMPRESAS)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Replica OV</title></head><body><ul>{links}</ul></body></html>"


def login_page(empresa: str, back: str, error: bool) -> str:
    """The DotNetNuke login page. Its submit control is script-driven: Afinia's is a
    ``<button type="button">`` whose handler base64-encodes the password, sets a hidden flag and
    posts back; Air-e's is a ``javascript:__doPostBack`` link. A plain form submit is refused."""
    display = html.escape(EMPRESA_DISPLAY[empresa])
    action = f"/{empresa}/login" + (f"?returnurl={urllib.parse.quote(back, safe='')}" if back else "")
    if empresa == "afinia":
        submit = (
            '<button type="button" class="btn btn-primary" id="dnn_ctr_Login_Login_DNN_btnIngresar" '
            'onclick="return ovLogin(this)">Iniciar sesión</button>'
        )
    else:
        submit = (
            '<a id="dnn_ctr_Login_Login_DNN_cmdLogin" class="dnnPrimaryAction" '
            "href=\"javascript:__doPostBack('dnn$ctr$Login$Login_DNN$cmdLogin','')\">Ingresar</a>"
        )
    msg = '<div class="dnnFormMessage dnnFormValidationSummary">Usuario o contraseña incorrectos</div>' if error else ""
    return f"""<!doctype html><html lang="es"><head><meta charset="utf-8"><title>Oficina Virtual {display} - Ingreso</title>
<style>{_STYLE}</style></head><body>
<form method="post" action="{html.escape(action)}" id="Form" autocomplete="off">
<input type="hidden" name="__EVENTTARGET" id="__EVENTTARGET" value="">
<input type="hidden" name="__EVENTARGUMENT" id="__EVENTARGUMENT" value="">
<input type="hidden" name="__VIEWSTATE" id="__VIEWSTATE" value="{secrets.token_urlsafe(32)}">
<input type="hidden" name="{ENCODED_FLAG}" id="dnn_ctr_Login_Login_DNN_hfPasswordEncoded" value="">
<h1>Oficina Virtual {display}</h1>{msg}
<div class="dnnFormItem"><label>Usuario</label>
<input name="{USER_INPUT}" type="text" id="dnn_ctr_Login_Login_DNN_txtUsername"></div>
<div class="dnnFormItem"><label>Contraseña</label>
<input name="{PASSWORD_INPUT}" type="password" id="dnn_ctr_Login_Login_DNN_txtPassword"></div>
{submit}
</form>
<script>
function __doPostBack(target, argument) {{
  const form = document.getElementById('Form');
  form.__EVENTTARGET.value = target; form.__EVENTARGUMENT.value = argument; form.submit();
}}
function ovLogin(button) {{
  const pw = document.getElementById('dnn_ctr_Login_Login_DNN_txtPassword');
  const bytes = new TextEncoder().encode(pw.value);
  pw.value = btoa(String.fromCharCode(...bytes));
  document.getElementById('dnn_ctr_Login_Login_DNN_hfPasswordEncoded').value = '1';
  __doPostBack('dnn$ctr$Login$Login_DNN$btnIngresar', '');
  return false;
}}
</script>
</body></html>"""


def app_page(empresa: str, debounce_ms: int = 500) -> str:
    """The list/detail single-page app, behaving like the real AngularJS Material one (CONTRACT
    §9): a 500 ms debounce between a typed date and the filter model (the calendar pane applies
    at once), a range label that moves at once while rows wait for their XHR, toasts that leave
    the old rows on screen, ``#Detail/<id>`` rewritten to ``#/Detail/<id>``, and the login page
    with ``returnurl`` when an XHR answers 401."""
    display = html.escape(EMPRESA_DISPLAY[empresa])
    modal = ""
    if empresa == "afinia":
        modal = """<div id="myModal" class="modal" role="dialog"><div class="modal-content">
<a class="closePopUp" href="javascript:void(0)" onclick="document.getElementById('myModal').classList.add('hidden')">&times;</a>
<h2>¡Nuevo! Paga tu factura en línea</h2><p>Promoción de la temporada.</p></div></div>"""
    estados = "".join(f'<md-option value="{html.escape(e)}">{html.escape(e)}</md-option>' for e in ESTADOS)
    columns = "".join(f'<th class="md-column">{html.escape(c)}</th>' for c, _ in LIST_COLUMNS)
    config = json.dumps(
        {
            "api": f"/{empresa}/api",
            "login": f"/{empresa}/login",
            "columns": [f for _, f in LIST_COLUMNS],
            "labels": [[label, f] for label, f in DETAIL_LABELS],
        },
        ensure_ascii=False,
    )
    picker = """<md-datepicker ng-model="filtros.{model}"><button class="md-datepicker-button md-icon-button" type="button" aria-label="Abrir calendario">&#128197;</button><div class="md-datepicker-input-container"><input class="md-datepicker-input" type="text" placeholder="YYYY-MM-DD"></div></md-datepicker>"""
    return rf"""<!doctype html><html lang="es" ng-app="ovApp"><head><meta charset="utf-8">
<title>Oficina Virtual {display}</title><style>{_STYLE}</style></head><body>
{modal}
<div id="app" ng-view></div>
<script type="text/template" id="tpl-list">
<md-content class="md-padding">
 <h2>Listado Radicación PQR</h2>
 <div class="accordion"><div class="accordion-heading" ng-click="toggleFiltros()" role="button">Filtrar</div>
  <div class="accordion-body hidden" id="filtros">
   <label>Estado</label>
   <md-select ng-model="filtros.Estado" aria-label="Estado" tabindex="0"><md-select-value class="md-select-value"><span>Todos</span></md-select-value></md-select>
   <div class="md-select-menu-container hidden"><md-select-menu><md-content>
     <md-option value="">Todos</md-option>{estados}</md-content></md-select-menu></div>
   <label>Fecha inicial</label>
   {picker.format(model="fechaInicial")}
   <label>Fecha final</label>
   {picker.format(model="fechaFinal")}
   <button class="md-raised md-primary md-button" ng-click="Search()" aria-label="Buscar" type="button">Buscar</button>
  </div></div>
 <md-progress-linear md-mode="indeterminate" class="hidden"></md-progress-linear>
 <md-table-container><table md-table class="md-table"><thead md-head class="md-head"><tr md-row>{columns}<th></th></tr></thead>
 <tbody md-body class="md-body"></tbody></table></md-table-container>
 <md-table-pagination class="md-table-pagination"><div class="label ng-binding"></div>
  <button class="md-icon-button md-button" ng-click="$pagination.previous()" aria-label="Previous page" type="button">&lsaquo;</button>
  <button class="md-icon-button md-button" ng-click="$pagination.next()" aria-label="Next page" type="button">&rsaquo;</button>
 </md-table-pagination>
</md-content>
</script>
<script>
const CFG = {config};
const DEBOUNCE_MS = {int(debounce_ms)};  // Angular Material's md-datepicker input debounce (500)
const app = document.getElementById('app');
const esc = s => String(s ?? '').replace(/[&<>"']/g, c => ({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}})[c]);
// The filter model (what a search sends) and the table's state survive route changes.
const filtros = {{Estado: '', fechaInicial: '', fechaFinal: ''}};
const query = {{page: 1}};
let total = 0, rows = [], searched = false, gen = 0;

async function api(path) {{
  const r = await fetch(CFG.api + path, {{credentials: 'same-origin', headers: {{'Accept': 'application/json'}}}});
  if (r.status === 401) {{
    window.location.href = CFG.login + '?returnurl=' + encodeURIComponent(location.pathname);
    throw new Error('session');
  }}
  if (!r.ok) {{ toast('Ocurrió un error al consultar la información. Intente nuevamente.'); throw new Error('http ' + r.status); }}
  return r.json();
}}
function toast(msg) {{
  const t = document.createElement('md-toast'); t.className = 'md-toast';
  t.innerHTML = '<div class="md-toast-content"><span class="md-toast-text">' + esc(msg) + '</span></div>';
  document.body.appendChild(t); setTimeout(() => t.remove(), 3000);
}}
function setLabel() {{
  const label = app.querySelector('div.label.ng-binding'); if (!label) return;
  const first = total ? (query.page - 1) * 10 + 1 : 0, last = Math.min(query.page * 10, total);
  label.textContent = first + ' - ' + last + ' de ' + total;
}}
function renderRows() {{
  const body = app.querySelector('tbody.md-body'); if (!body) return;
  body.innerHTML = rows.map(r => '<tr md-row class="md-row">' +
    CFG.columns.map(c => '<td md-cell class="md-cell">' + esc(r[c]) + '</td>').join('') +
    '<td md-cell class="md-cell"><a class="md-primary md-icon-button" tooltip="Ver PQR" href="#Detail/' + r.id + '">&#128065;</a></td></tr>').join('');
}}
function progress(on) {{ const p = app.querySelector('md-progress-linear'); if (p) p.classList.toggle('hidden', !on); }}
function isoDay(d) {{ return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0'); }}
function datepicker(el, key) {{
  const input = el.querySelector('input');
  input.value = filtros[key];
  let timer = null;
  input.addEventListener('input', () => {{
    clearTimeout(timer);
    timer = setTimeout(() => {{
      const v = input.value.trim();
      const ok = v === '' || (/^\d{{4}}-\d{{2}}-\d{{2}}$/.test(v) && !isNaN(new Date(v + 'T00:00:00')));
      el.classList.toggle('md-datepicker-invalid', !ok);
      if (ok) filtros[key] = v;
    }}, DEBOUNCE_MS);
  }});
  el.querySelector('.md-datepicker-button').onclick = () => {{
    const open = document.querySelector('.md-datepicker-calendar-pane'); if (open) open.remove();
    const base = filtros[key] ? new Date(filtros[key] + 'T00:00:00') : new Date();
    calendar(el, key, input, new Date(base.getFullYear(), base.getMonth(), 1));
  }};
}}
function calendar(el, key, input, month) {{
  const pane = document.createElement('div'); pane.className = 'md-datepicker-calendar-pane md-pane-open';
  const first = month.getDay(), days = new Date(month.getFullYear(), month.getMonth() + 1, 0).getDate();
  let cells = '<td></td>'.repeat(first);
  for (let d = 1; d <= days; d++) {{
    const day = new Date(month.getFullYear(), month.getMonth(), d);
    cells += '<td class="md-calendar-date" data-timestamp="' + day.getTime() + '" id="md-' + isoDay(day) + '"><span class="md-calendar-date-selection-indicator">' + d + '</span></td>';
    if ((first + d) % 7 === 0) cells += '</tr><tr>';
  }}
  const name = month.toLocaleDateString('es-CO', {{month: 'long', year: 'numeric'}});
  pane.innerHTML = '<div class="md-calendar-month-label">' + esc(name) + '</div>' +
    '<button type="button" class="md-calendar-previous-month" aria-label="Mes anterior">&lsaquo;</button>' +
    '<button type="button" class="md-calendar-next-month" aria-label="Mes siguiente">&rsaquo;</button>' +
    '<md-calendar><table class="md-calendar"><tbody><tr>' + cells + '</tr></tbody></table></md-calendar>';
  el.appendChild(pane);
  pane.querySelector('.md-calendar-previous-month').onclick = () => {{ pane.remove(); calendar(el, key, input, new Date(month.getFullYear(), month.getMonth() - 1, 1)); }};
  pane.querySelector('.md-calendar-next-month').onclick = () => {{ pane.remove(); calendar(el, key, input, new Date(month.getFullYear(), month.getMonth() + 1, 1)); }};
  pane.querySelectorAll('td.md-calendar-date').forEach(td => td.onclick = () => {{
    const v = isoDay(new Date(Number(td.dataset.timestamp)));
    filtros[key] = v; input.value = v; el.classList.remove('md-datepicker-invalid'); pane.remove();
  }});
}}
function renderList() {{
  app.innerHTML = document.getElementById('tpl-list').innerHTML;
  app.querySelector('.accordion-heading').onclick = () => document.getElementById('filtros').classList.toggle('hidden');
  const sel = app.querySelector('md-select'), menu = app.querySelector('.md-select-menu-container');
  sel.onclick = () => menu.classList.toggle('hidden');
  menu.querySelectorAll('md-option').forEach(o => o.onclick = () => {{
    filtros.Estado = o.getAttribute('value'); sel.querySelector('span').textContent = o.textContent;
    menu.classList.add('hidden');
  }});
  app.querySelectorAll('md-datepicker').forEach(el => datepicker(el, el.getAttribute('ng-model').split('.')[1]));
  // The label follows the pagination model at once; the rows only when the XHR answers.
  app.querySelector("button[ng-click='Search()']").onclick = () => {{ query.page = 1; setLabel(); load(); }};
  app.querySelector("button[ng-click*='next()']").onclick = () => {{
    if (query.page * 10 < total) {{ query.page += 1; setLabel(); load(); }}
  }};
  app.querySelector("button[ng-click*='previous()']").onclick = () => {{
    if (query.page > 1) {{ query.page -= 1; setLabel(); load(); }}
  }};
  setLabel();
  if (searched) load();
}}
async function load() {{
  const my = ++gen; searched = true; progress(true);
  const q = new URLSearchParams({{desde: filtros.fechaInicial, hasta: filtros.fechaFinal, estado: filtros.Estado, page: query.page}});
  try {{
    const data = await api('/pqr?' + q.toString());
    if (my !== gen || !location.hash.startsWith('#/List')) return;
    total = data.total; rows = data.rows; renderRows(); setLabel();
  }} catch (e) {{ /* the toast said it; the previous rows stay on screen */ }}
  finally {{ if (my === gen) progress(false); }}
}}
async function renderDetail(id) {{
  const my = ++gen;
  // A route change rebuilds the view: labels now, values when the detail's own XHR answers.
  const labelRows = CFG.labels.map(([label, key]) => '<tr><td class="text-td-label">' + esc(label) + '</td><td class="ng-binding" data-key="' + (key || '') + '"></td></tr>').join('');
  app.innerHTML = '<md-content class="md-padding"><h2>Detalle PQR</h2><a href="#/List">Volver</a><md-progress-circular></md-progress-circular>' +
    '<table class="table-detalle"><tbody>' + labelRows +
    '<tr><td class="text-td-label">N° Reclamo SGC</td><td><input name="NumeroReclamoSGC" type="text" readonly></td></tr></tbody></table>' +
    '<h3>Archivos adjuntos</h3><div class="adjuntos"></div></md-content>';
  let data;
  try {{ data = await api('/pqr/' + encodeURIComponent(id)); }} catch (e) {{ return; }}
  if (my !== gen) return;
  const f = data.fields;
  app.querySelectorAll('td.ng-binding').forEach(td => {{
    const key = td.dataset.key, label = td.previousElementSibling.textContent;
    td.textContent = key ? (f[key] ?? '') : (label.startsWith('Fecha') ? '' : 'N/A');
  }});
  app.querySelector("input[name='NumeroReclamoSGC']").value = f.numero_reclamo_sgc;
  app.querySelector('.adjuntos').innerHTML = data.adjuntos.map(a => '<div class="link-archivo" ng-click="descargarAdjunto(item)" data-n="' + a.n + '">' + esc(a.nombre) + '</div>').join('');
  app.querySelector('md-progress-circular').remove();
  app.querySelectorAll('div.link-archivo').forEach(d => d.onclick = () => {{
    const a = document.createElement('a'); a.href = CFG.api + '/adjunto/' + data.id + '/' + d.dataset.n;
    a.download = ''; document.body.appendChild(a); a.click(); a.remove();
  }});
}}
function route() {{
  const m = location.hash.match(/^#\/?Detail\/(\d+)/);
  if (m) {{
    if (!location.hash.startsWith('#/')) {{ history.replaceState(null, '', '#/Detail/' + m[1]); }}
    renderDetail(m[1]);
  }} else {{
    if (!location.hash.startsWith('#/List')) {{ history.replaceState(null, '', '#/List'); }}
    renderList();
  }}
}}
window.addEventListener('hashchange', route);
// Like the real app, the view appears only after the scripts have "bootstrapped".
setTimeout(route, 30);
</script></body></html>"""
