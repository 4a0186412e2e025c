// A whole field with its detections (review/field.html): click a box (or a cell in the list) to see
// the cell; doctors classify it in place (keys 1-5, 0, Enter like the review gallery), reject a
// detection that is not a white cell, or drag a box around a missed cell and add it. Every change
// goes to the REST API with the page's session and CSRF token, like review.js.
(function () {
  const view = document.getElementById("field-view");
  if (!view) return;
  const canEdit = view.dataset.canEdit === "1";
  const svg = document.getElementById("field-overlay");
  const boxes = Array.from(svg.querySelectorAll("rect.box[data-image-id]"));
  const panel = document.getElementById("field-cell-panel");
  const errorBox = document.getElementById("field-error");
  const drawBox = document.getElementById("draw-box");
  const addButton = document.getElementById("add-cell-button");
  const drawStatus = document.getElementById("draw-status");
  const rejectButton = document.getElementById("reject-button");
  const restoreButton = document.getElementById("restore-button");
  const KEY_CLASSES = {};
  document.querySelectorAll("[data-set-class][data-key]").forEach((b) => { KEY_CLASSES[b.dataset.key] = b.dataset.setClass; });
  let current = null;
  let drawn = null;

  function csrfToken() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    if (m) return decodeURIComponent(m[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function title(s) { return s ? s.charAt(0) + s.slice(1).toLowerCase() : "—"; }
  function text(id, value) { const el = document.getElementById(id); if (el) el.textContent = value; }
  function errorText(data) {
    if (data.detail) return data.detail;
    const first = Object.values(data)[0];
    return Array.isArray(first) ? first.join(" ") : "Not saved";
  }

  async function call(url, payload, method = "POST") {
    errorBox.textContent = "";
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: JSON.stringify(payload),
    });
    const data = await response.json().catch(() => ({ detail: "Unexpected server response" }));
    if (!response.ok) { errorBox.textContent = errorText(data); return null; }
    return data;
  }

  function select(box) {
    current = box;
    boxes.forEach((b) => b.classList.toggle("box-selected", b === box));
    if (!box) { panel.hidden = true; return; }
    panel.hidden = false;
    text("field-cell-file", box.dataset.file);
    document.getElementById("field-cell-img").src = box.dataset.imageUrl;
    text("field-cell-origin", box.dataset.origin);
    text("field-cell-status", box.dataset.status);
    document.getElementById("field-cell-edge").hidden = box.dataset.edge !== "1";
    text("field-cell-ai", title(box.dataset.aiClass));
    text("field-cell-confidence", box.dataset.confidence);
    text("field-cell-final", title(box.dataset.final));
    text("field-cell-rejection", box.dataset.rejection || "");
    const rejected = box.dataset.rejected === "1";
    if (rejectButton) rejectButton.hidden = rejected;
    if (restoreButton) restoreButton.hidden = !rejected;
  }

  async function classify(cls) {
    if (!canEdit || !current || !cls) return;
    const data = await call(current.dataset.reviewUrl, { final_class: cls });
    if (!data) return;
    current.dataset.final = data.cell.final_class || "";
    text("field-cell-final", title(current.dataset.final));
  }

  boxes.forEach((box) => {
    box.addEventListener("click", (e) => { e.stopPropagation(); select(box); });
    box.addEventListener("mousedown", (e) => e.stopPropagation());
  });
  document.querySelectorAll("[data-select]").forEach((b) => b.addEventListener("click", () => {
    select(boxes.find((x) => x.dataset.imageId === b.dataset.select) || null);
  }));
  document.querySelectorAll("[data-set-class]").forEach((b) => b.addEventListener("click", () => classify(b.dataset.setClass)));
  if (rejectButton) rejectButton.addEventListener("click", async () => {
    if (!current) return;
    const reason = document.getElementById("reject-reason").value;
    if (await call(current.dataset.rejectUrl, { reason })) window.location.reload();
  });
  if (restoreButton) restoreButton.addEventListener("click", async () => {
    if (!current) return;
    if (await call(current.dataset.rejectUrl, {}, "DELETE")) window.location.reload();
  });

  // Drawing a box: field pixels from the mouse, whatever size the field is shown at.
  function fieldPoint(e) {
    const r = svg.getBoundingClientRect();
    const w = Number(view.dataset.width), h = Number(view.dataset.height);
    return {
      x: Math.max(0, Math.min(w, Math.round((e.clientX - r.left) * w / r.width))),
      y: Math.max(0, Math.min(h, Math.round((e.clientY - r.top) * h / r.height))),
    };
  }
  let start = null;
  function showDrawn(a, b) {
    const x0 = Math.min(a.x, b.x), y0 = Math.min(a.y, b.y), x1 = Math.max(a.x, b.x), y1 = Math.max(a.y, b.y);
    drawBox.setAttribute("x", x0); drawBox.setAttribute("y", y0);
    drawBox.setAttribute("width", x1 - x0); drawBox.setAttribute("height", y1 - y0);
    drawBox.removeAttribute("hidden");
    return [x0, y0, x1, y1];
  }
  if (canEdit) {
    svg.addEventListener("mousedown", (e) => { start = fieldPoint(e); e.preventDefault(); });
    svg.addEventListener("mousemove", (e) => { if (start) showDrawn(start, fieldPoint(e)); });
    window.addEventListener("mouseup", (e) => {
      if (!start) return;
      const box = showDrawn(start, fieldPoint(e));
      start = null;
      if (box[2] - box[0] < 8 || box[3] - box[1] < 8) {
        drawn = null; drawBox.setAttribute("hidden", ""); addButton.disabled = true;
        drawStatus.textContent = "No box drawn.";
        return;
      }
      drawn = box;
      addButton.disabled = false;
      drawStatus.textContent = `Box ${box[0]},${box[1]} – ${box[2]},${box[3]} (${box[2] - box[0]}×${box[3] - box[1]} px).`;
    });
    addButton.addEventListener("click", async () => {
      if (!drawn) return;
      addButton.disabled = true;
      const data = await call(view.dataset.addUrl, { box: drawn });
      if (data) window.location.reload(); else addButton.disabled = false;
    });
  }

  document.addEventListener("keydown", (e) => {
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (!current) return;
    if (e.key in KEY_CLASSES) { e.preventDefault(); classify(KEY_CLASSES[e.key]); }
    else if (e.key === "Enter") { e.preventDefault(); classify(current.dataset.aiClass); }
  });
  const preselected = boxes.find((b) => b.classList.contains("box-selected"));
  if (preselected) select(preselected);
})();
