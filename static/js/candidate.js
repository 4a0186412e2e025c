// Shows a candidate run's progress live: polls the API's run endpoint until the run is finished.
(function () {
  const card = document.getElementById("candidate-run");
  if (!card || card.dataset.finished === "1") return;
  const url = card.dataset.progressUrl;
  const FINISHED = ["succeeded", "failed", "cancelled"];

  function describe(p) {
    if (!p || !p.stage) return "";
    let text = p.stage;
    if (p.stage === "activations" && p.total) text += `: ${p.done} of ${p.total} cells`;
    if (p.epochs) text += `: epoch ${p.epoch} of ${p.epochs}`;
    if (p.loss !== null && p.loss !== undefined) text += `, loss ${Number(p.loss).toFixed(3)}`;
    if (p.eta_s) text += `, about ${Math.round(p.eta_s)} s left`;
    return text;
  }

  async function poll() {
    let run;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return schedule(10000);
      run = await response.json();
    } catch (e) {
      return schedule(10000);
    }
    const status = document.getElementById("run-status");
    status.textContent = run.status_label;
    status.className = "status status-" + run.status;
    document.getElementById("run-progress").textContent = describe(run.progress);
    const bar = document.getElementById("run-bar");
    bar.max = Math.max(1, run.progress.epochs || 1);
    bar.value = run.progress.epoch || 0;
    document.getElementById("run-reason").textContent = run.failure_reason || "";
    if (FINISHED.includes(run.status)) { window.location.reload(); return; }
    schedule(2000);
  }
  function schedule(ms) { setTimeout(poll, ms); }
  schedule(1500);
})();
