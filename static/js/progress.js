// Polls the sample's progress endpoint and updates image statuses without a reload.
(function () {
  const gallery = document.getElementById("image-gallery");
  if (!gallery) return;
  const url = gallery.dataset.progressUrl;
  let knownImages = gallery.querySelectorAll("[data-image-id]").length;
  // Whole fields: the page reloads when one is analysed (its cells and counts appear).
  const fieldRows = Array.from(document.querySelectorAll("[data-field-id]"));
  const fieldsPending = fieldRows.some((r) => r.dataset.status === "received" || r.dataset.status === "detecting");

  async function poll() {
    let data;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return schedule(10000);
      data = await response.json();
    } catch (e) {
      return schedule(10000);
    }
    if (data.images.length !== knownImages) { window.location.reload(); return; }
    for (const f of data.fields || []) {
      const row = fieldRows.find((r) => r.dataset.fieldId === String(f.id));
      if (!row || row.dataset.status !== f.status) { window.location.reload(); return; }
    }
    for (const img of data.images) {
      const fig = gallery.querySelector(`[data-image-id="${img.id}"]`);
      if (!fig) continue;
      const status = fig.querySelector('[data-role="status"]');
      status.textContent = img.status_label;
      status.className = "status status-" + img.status;
      fig.querySelector('[data-role="error"]').textContent = img.error || "";
    }
    // Both are live regions: only a real change is written, so screen readers announce it once.
    const s = document.getElementById("sample-status");
    if (s.textContent !== data.sample_status_label) s.textContent = data.sample_status_label;
    s.className = "status status-" + data.sample_status;
    const text = `${data.progress.done} of ${data.progress.total} processed`;
    const progressText = document.getElementById("progress-text");
    if (progressText.textContent !== text) progressText.textContent = text;
    const bar = document.getElementById("progress-bar");
    bar.max = Math.max(1, data.progress.total);
    bar.value = data.progress.done;
    // Keep polling until every image is done AND the sample has left the classification states
    // (the worker moves the sample on just after storing its last prediction).
    const sampleBusy = data.sample_status === "images_uploaded" || data.sample_status === "classifying";
    if (data.progress.done < data.progress.total || sampleBusy) schedule(2000);
  }
  function schedule(ms) { setTimeout(poll, ms); }
  if (knownImages || fieldsPending) schedule(1500);
})();
