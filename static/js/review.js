// Keyboard-driven cell review: 1-5 classes, 0 exclude, Enter confirms the AI class,
// arrows move between cells (left/right) and groups (up/down), H toggles the Grad-CAM overlay.
(function () {
  const gallery = document.getElementById("review-gallery");
  if (!gallery) return;
  const canEdit = gallery.dataset.canEdit === "1";
  const cells = Array.from(gallery.querySelectorAll(".review-cell"));
  const KEY_CLASSES = { "1": "EOSINOPHIL", "2": "LYMPHOCYTE", "3": "MONOCYTE", "4": "NEUTROPHIL", "5": "BASOPHIL", "0": "EXCLUDED" };
  const panel = document.getElementById("cell-panel");
  const largeImg = document.getElementById("cell-large-img");
  const heat = document.getElementById("cell-large-heatmap");
  const heatToggle = document.getElementById("heatmap-toggle");
  const heatNote = document.getElementById("heatmap-note");
  let heatMissing = false;
  // A heatmap is computed after classification (second pass): until then the overlay is simply absent.
  heat.addEventListener("error", () => { heatMissing = true; showHeat(); });
  heat.addEventListener("load", () => { heatMissing = false; showHeat(); });
  function showHeat() {
    heat.hidden = !heatToggle.checked || heatMissing;
    heatNote.hidden = !(heatToggle.checked && heatMissing);
  }
  const commentBox = document.getElementById("cell-comment");
  const errorBox = document.getElementById("cell-error");
  let current = -1;

  function csrfToken() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    if (m) return decodeURIComponent(m[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function title(s) { return s ? s.charAt(0) + s.slice(1).toLowerCase() : "—"; }

  function select(i) {
    if (!cells.length) return;
    current = Math.max(0, Math.min(cells.length - 1, i));
    cells.forEach((c, j) => c.classList.toggle("selected", j === current));
    const cell = cells[current];
    cell.focus({ preventScroll: false });
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

  function updateState(state) {
    for (const row of state.differential.rows) {
      const tr = document.querySelector(`#differential tr[data-class="${row.class}"]`);
      if (!tr) continue;
      const tds = tr.querySelectorAll("td");
      tds[1].textContent = row.ai_count; tds[2].textContent = row.ai_percent ?? "—";
      tds[3].textContent = row.final_count; tds[4].textContent = row.final_percent ?? "—";
      tds[5].textContent = row.absolute ?? "—";
    }
    document.getElementById("final-total").textContent = state.differential.final_total;
    document.getElementById("excluded").textContent = state.differential.excluded;
    document.getElementById("unreviewed").textContent = state.differential.unreviewed;
    const blockers = document.getElementById("blockers");
    if (blockers) {
      blockers.innerHTML = "";
      for (const b of state.blockers) {
        const li = document.createElement("li");
        li.textContent = b.charAt(0).toUpperCase() + b.slice(1);
        blockers.appendChild(li);
      }
    }
    gallery.querySelectorAll(".review-group").forEach((group) => {
      const counter = group.querySelector('[data-role="group-unreviewed"]');
      if (!counter) return;
      const ids = Array.from(group.querySelectorAll("[data-image-id]")).map((c) => c.dataset.imageId);
      counter.textContent = ids.filter((id) => state.cells[id] && !state.cells[id].final_class).length;
    });
    for (const [id, info] of Object.entries(state.cells)) {
      const cell = gallery.querySelector(`[data-image-id="${id}"]`);
      if (!cell) continue;
      cell.querySelector('[data-role="final"]').textContent = title(info.final_class);
      cell.classList.toggle("reviewed", !!info.final_class);
      cell.dataset.comment = info.comment;
    }
  }

  async function send(cell, payload) {
    if (!canEdit) return;
    errorBox.textContent = "";
    const response = await fetch(cell.dataset.reviewUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: JSON.stringify(payload),
    });
    const data = await response.json().catch(() => ({ error: "Unexpected server response" }));
    if (!response.ok) { errorBox.textContent = data.error || "Not saved"; return false; }
    updateState(data);
    return true;
  }

  async function classify(cls) {
    if (current < 0) return;
    const ok = await send(cells[current], { final_class: cls });
    if (ok) select(current + 1);
  }

  function moveGroup(delta) {
    if (current < 0) return select(0);
    const groups = Array.from(gallery.querySelectorAll(".review-group"));
    const g = groups.indexOf(cells[current].closest(".review-group"));
    const target = groups[Math.max(0, Math.min(groups.length - 1, g + delta))];
    const first = target.querySelector(".review-cell");
    if (first) select(cells.indexOf(first));
  }

  cells.forEach((cell, i) => cell.addEventListener("click", () => select(i)));
  document.querySelectorAll("[data-set-class]").forEach((b) => b.addEventListener("click", () => classify(b.dataset.setClass)));
  const saveComment = document.getElementById("save-comment");
  if (saveComment) saveComment.addEventListener("click", async () => {
    const cell = cells[current];
    const cls = cell.querySelector('[data-role="final"]').textContent.trim();
    const finalClass = cls && cls !== "—" ? cls.toUpperCase() : cell.dataset.aiClass;
    await send(cell, { final_class: finalClass, comment: commentBox.value });
  });
  heatToggle.addEventListener("change", () => {
    if (heatToggle.checked && heatMissing && current >= 0) {  // it may have been computed meanwhile
      heatMissing = false;
      heat.src = cells[current].dataset.heatmapUrl + "?t=" + Date.now();
    }
    showHeat();
  });

  document.addEventListener("keydown", (e) => {
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key in KEY_CLASSES) { e.preventDefault(); classify(KEY_CLASSES[e.key]); }
    else if (e.key === "Enter" && current >= 0) { e.preventDefault(); classify(cells[current].dataset.aiClass); }
    else if (e.key === "ArrowRight") { e.preventDefault(); select(current + 1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); select(current - 1); }
    else if (e.key === "ArrowDown") { e.preventDefault(); moveGroup(1); }
    else if (e.key === "ArrowUp") { e.preventDefault(); moveGroup(-1); }
    else if (e.key === "h" || e.key === "H") { heatToggle.checked = !heatToggle.checked; showHeat(); }
  });
  if (cells.length) select(0);
})();
