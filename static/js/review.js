// Keyboard-driven cell review: 1-5 classes, 0 exclude, Enter confirms the AI class,
// arrows move between cells (left/right) and groups (up/down), H toggles the Grad-CAM overlay.
// Each verdict goes to the REST API (POST /api/v1/samples/<id>/images/<id>/review/, the page's
// session and CSRF token); its answer (the cell, the differential, the sign-off blockers and the hash
// of the result) updates the page in place: a reclassified cell moves to its new group at once.
// When the page is shown again (Back/Forward, a tab brought back) it reloads its state from the API,
// so that the result on screen, and the hash the sign-off form sends, are the server's.
(function () {
  const gallery = document.getElementById("review-gallery");
  if (!gallery) return;
  const canEdit = gallery.dataset.canEdit === "1";
  const allCells = () => Array.from(gallery.querySelectorAll(".review-cell"));
  // The keys come from the page's class buttons (the server's one list of classes).
  const KEY_CLASSES = {};
  document.querySelectorAll("[data-set-class][data-key]").forEach((b) => { KEY_CLASSES[b.dataset.key] = b.dataset.setClass; });
  const panel = document.getElementById("cell-panel");
  const largeImg = document.getElementById("cell-large-img");
  const heat = document.getElementById("cell-large-heatmap");
  const heatToggle = document.getElementById("heatmap-toggle");
  const heatNote = document.getElementById("heatmap-note");
  const commentBox = document.getElementById("cell-comment");
  const errorBox = document.getElementById("cell-error");
  const live = document.getElementById("review-live");
  let current = null;  // the selected cell (a figure)

  function announce(text) {
    // Cleared first, so that the same words twice are announced twice.
    live.textContent = "";
    window.setTimeout(() => { live.textContent = text; }, 30);
  }
  function showError(text) {
    errorBox.textContent = text;
    if (text) announce(text);
  }

  // Grad-CAM overlay: off by default (the doctor sees the true stain colours); the choice is kept for
  // the browser session. A heatmap is computed after classification (second pass): until then it is absent.
  const HEAT_KEY = "hv-review-heatmap";
  let heatMissing = false;
  heatToggle.checked = window.sessionStorage.getItem(HEAT_KEY) === "on";
  heat.addEventListener("error", () => { heatMissing = true; showHeat(); });
  heat.addEventListener("load", () => { heatMissing = false; showHeat(); });
  function showHeat() {
    heat.hidden = !heatToggle.checked || heatMissing;
    heatNote.hidden = !(heatToggle.checked && heatMissing);
  }
  function setHeat(on) {
    heatToggle.checked = on;
    window.sessionStorage.setItem(HEAT_KEY, on ? "on" : "off");
    if (on && heatMissing && current) {  // it may have been computed meanwhile
      heatMissing = false;
      heat.src = current.dataset.heatmapUrl + "?t=" + Date.now();
    }
    showHeat();
    announce(on ? "Grad-CAM overlay on" : "Grad-CAM overlay off");
  }
  heatToggle.addEventListener("change", () => setHeat(heatToggle.checked));
  showHeat();

  function csrfToken() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    if (m) return decodeURIComponent(m[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function title(s) { return s ? s.charAt(0) + s.slice(1).toLowerCase() : "—"; }
  function label(s) { return s === "EXCLUDED" ? "Excluded" : title(s); }

  function select(cell, { scroll = true } = {}) {
    if (!cell) return;
    current = cell;
    allCells().forEach((c) => c.classList.toggle("selected", c === cell));
    cell.focus({ preventScroll: true });
    if (scroll) cell.scrollIntoView({ block: "nearest" });
    panel.hidden = false;
    document.getElementById("cell-file").textContent = cell.dataset.file;
    largeImg.src = cell.dataset.imageUrl;
    heatMissing = false;
    heat.src = cell.dataset.heatmapUrl;
    showHeat();
    document.getElementById("cell-probs").textContent = "AI: " + (cell.dataset.probs || "no prediction");
    if (commentBox) commentBox.value = cell.dataset.comment || "";
    errorBox.textContent = "";
  }
  function step(delta) {
    const cells = allCells();
    if (!cells.length) return;
    const i = current ? cells.indexOf(current) : -1;
    select(cells[Math.max(0, Math.min(cells.length - 1, i + delta))]);
  }

  // One cell as the API describes it (ReviewCellSerializer): its final class, the "was" note, its group.
  function applyCell(info) {
    const cell = gallery.querySelector(`[data-image-id="${info.image_id}"]`);
    if (!cell) return;
    cell.querySelector('[data-role="final"]').textContent = title(info.final_class);
    cell.classList.toggle("reviewed", !!info.final_class);
    cell.dataset.comment = info.comment;
    const was = cell.querySelector('[data-role="was"]');
    if (was) {
      was.hidden = !info.reclassified;
      was.innerHTML = "<br>";
      was.append(`was: ${title(cell.dataset.aiClass)} (AI)`);
    }
    const section = gallery.querySelector(`.review-group[data-group="${info.group}"]`);
    if (section && !section.contains(cell)) {
      const target = section.querySelector(".gallery");
      const confidence = parseFloat(cell.dataset.confidence) || 0;
      const after = Array.from(target.children).find((c) => (parseFloat(c.dataset.confidence) || 0) > confidence);
      target.insertBefore(cell, after || null);
    }
  }

  function recountGroups() {
    gallery.querySelectorAll(".review-group").forEach((group) => {
      const all = group.querySelectorAll(".review-cell").length;
      const open = group.querySelectorAll(".review-cell:not(.reviewed)").length;
      group.hidden = all === 0;
      group.querySelector('[data-role="group-count"]').textContent = all;
      group.querySelector('[data-role="group-unreviewed"]').textContent = open;
      const form = group.querySelector(".confirm-group");
      if (form) {
        form.hidden = open === 0;
        form.querySelector('[data-role="confirm-count"]').textContent = open;
      }
    });
  }

  function flagCell(td, value, flag) {
    td.textContent = value ?? "—";
    if (!flag) return;
    const strong = document.createElement("strong");
    strong.className = "flag";
    strong.textContent = flag;
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = flag === "H" ? " (high)" : " (low)";
    strong.appendChild(hidden);
    td.append(" ", strong);
  }

  // The differential, the blockers, the minimum count and the hash the sign-off form sends.
  function updateState(state) {
    for (const row of state.differential.rows) {
      const tr = document.querySelector(`#differential tr[data-class="${row.class}"]`);
      if (!tr) continue;
      const tds = tr.querySelectorAll("td");
      tds[0].textContent = row.ai_count; tds[1].textContent = row.ai_percent ?? "—";
      tds[2].textContent = row.final_count;
      flagCell(tds[3], row.final_percent, row.percent_flag);
      flagCell(tds[4], row.absolute, row.absolute_flag);
    }
    document.getElementById("ai-total").textContent = state.differential.ai_total;
    document.getElementById("final-total").textContent = state.differential.final_total;
    document.getElementById("counted").textContent = state.differential.final_total;
    document.getElementById("excluded").textContent = state.differential.excluded;
    document.getElementById("unreviewed").textContent = state.differential.unreviewed;
    const blockers = document.getElementById("blockers");
    if (blockers) {
      blockers.innerHTML = "";
      for (const b of state.sign_off_blockers) {
        const li = document.createElement("li");
        li.textContent = b.charAt(0).toUpperCase() + b.slice(1);
        blockers.appendChild(li);
      }
    }
    const shortfall = document.getElementById("count-shortfall");
    if (shortfall) {
      shortfall.textContent = state.minimum_count.shortfall;
      shortfall.hidden = !state.minimum_count.shortfall;
      document.getElementById("count-override").hidden = !state.minimum_count.shortfall;
    }
    const hash = document.getElementById("result-sha256");
    if (hash) {
      hash.value = state.result_sha256;
      const shown = document.getElementById("result-hash");
      shown.textContent = state.result_sha256.slice(0, 12);
      shown.title = state.result_sha256;
    }
    recountGroups();
  }

  function errorText(data) {
    if (data.detail) return data.detail;
    const first = Object.values(data)[0];
    return Array.isArray(first) ? first.join(" ") : "Not saved";
  }

  async function call(url, method, payload) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: payload === undefined ? undefined : JSON.stringify(payload),
    }).catch(() => null);
    if (!response) return { ok: false, data: { detail: "The server could not be reached; nothing was saved." } };
    const data = await response.json().catch(() => ({ detail: "Unexpected server response" }));
    return { ok: response.ok, status: response.status, data };
  }

  async function send(cell, payload) {
    if (!canEdit) return null;
    errorBox.textContent = "";
    const { ok, data } = await call(cell.dataset.reviewUrl, "POST", payload);
    if (!ok) { showError(errorText(data)); return null; }
    applyCell(data.cell);
    updateState(data);
    return data;
  }

  async function classify(cls) {
    if (!current || !canEdit) return;
    const cell = current;
    const cells = allCells();
    const next = cells[cells.indexOf(cell) + 1] || cell;  // taken before the cell moves to its new group
    const payload = { final_class: cls };
    if (commentBox && commentBox.value !== (cell.dataset.comment || "")) payload.comment = commentBox.value;
    const data = await send(cell, payload);
    if (!data) return;
    const moved = data.cell.reclassified ? `, was ${title(cell.dataset.aiClass)} (AI); moved to ${label(data.cell.group)}` : "";
    announce(`${cell.dataset.file}: ${label(cls)}${moved}. ${data.differential.unreviewed} unreviewed.`);
    select(nextToReview(next));
  }

  // After a verdict: the first unreviewed cell from where the cell was (a moved cell is not met
  // again), else the first unreviewed one from the top, else simply the next cell.
  function nextToReview(from) {
    const cells = allCells();
    const open = (c) => !c.classList.contains("reviewed");
    const start = Math.max(0, cells.indexOf(from));
    return cells.slice(start).find(open) || cells.find(open) || from;
  }

  // Back/Forward or a tab brought back: the server's state replaces what the page shows.
  async function refresh() {
    const { ok, data } = await call(gallery.dataset.stateUrl, "GET");
    if (!ok) return;
    const shownIds = allCells().map((c) => c.dataset.imageId).sort().join(",");
    const serverIds = data.cells.map((c) => String(c.image_id)).sort().join(",");
    const sampleComment = document.getElementById("sample-comment");
    if (shownIds !== serverIds || data.can_edit !== canEdit
        || (sampleComment && data.sample_comment !== sampleComment.defaultValue)) {
      window.location.reload();  // cells added or rejected, signed elsewhere, a new sample comment
      return;
    }
    const before = document.getElementById("result-sha256");
    const changed = before && before.value !== data.result_sha256;
    data.cells.forEach(applyCell);
    updateState(data);
    if (current && commentBox && document.activeElement !== commentBox) commentBox.value = current.dataset.comment || "";
    if (changed) announce("The review was changed elsewhere; the page now shows the saved result.");
  }
  window.addEventListener("pageshow", (e) => { if (e.persisted) refresh(); });
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") refresh(); });

  // "Confirm all" of a group, in place: no reload, no jump to the top; focus stays in the group.
  document.querySelectorAll(".confirm-group").forEach((form) => form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const group = form.closest(".review-group");
    const { ok, data } = await call(gallery.dataset.confirmUrl, "POST", { ai_class: form.dataset.group });
    if (!ok) { showError(errorText(data)); return; }
    await refresh();
    const heading = group.querySelector("h2");
    heading.focus({ preventScroll: true });
    announce(`${data.confirmed} cell(s) confirmed as ${title(form.dataset.group)}. ${data.differential.unreviewed} unreviewed.`);
  }));

  allCells().forEach((cell) => cell.addEventListener("click", () => select(cell, { scroll: false })));
  document.querySelectorAll("[data-set-class]").forEach((b) => b.addEventListener("click", () => classify(b.dataset.setClass)));
  const saveComment = document.getElementById("save-comment");
  if (saveComment) saveComment.addEventListener("click", async () => {
    if (!current) return;
    // Only the comment: the cell's class and review status stay as they are.
    const data = await send(current, { comment: commentBox.value });
    if (data) announce(`Comment on ${current.dataset.file} saved.`);
  });

  const TYPING = new Set(["text", "password", "search", "email", "number", "date", "datetime-local", "url", "tel"]);
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const tag = (t.tagName || "").toLowerCase();
    const typing = tag === "textarea" || tag === "select" || (tag === "input" && TYPING.has(t.type));
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (tag === "button" && (e.key === "Enter" || e.key === " ")) return;  // the button's own action
    if (e.key in KEY_CLASSES) { e.preventDefault(); classify(KEY_CLASSES[e.key]); }
    else if (e.key === "Enter" && current) { e.preventDefault(); classify(current.dataset.aiClass); }
    else if (e.key === "ArrowRight") { e.preventDefault(); step(1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); step(-1); }
    else if (e.key === "ArrowDown") { e.preventDefault(); moveGroup(1); }
    else if (e.key === "ArrowUp") { e.preventDefault(); moveGroup(-1); }
    else if (e.key === "h" || e.key === "H") { e.preventDefault(); setHeat(!heatToggle.checked); }
  });

  function moveGroup(delta) {
    if (!current) return step(0);
    const groups = Array.from(gallery.querySelectorAll(".review-group")).filter((g) => !g.hidden);
    const g = groups.indexOf(current.closest(".review-group"));
    const target = groups[Math.max(0, Math.min(groups.length - 1, g + delta))];
    const first = target && target.querySelector(".review-cell");
    if (first) select(first);
  }

  const first = allCells()[0];
  if (first) select(first, { scroll: false });
})();
