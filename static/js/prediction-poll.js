// Polls the prediction API while the job is queued or running and fills in the result.
(function () {
  var result = document.getElementById("result");
  if (!result) return;
  var url = result.getAttribute("data-api-url");
  var finished = ["succeeded", "failed", "cancelled"];
  var status = document.getElementById("status");
  if (finished.indexOf(status.textContent.trim()) !== -1) return;

  function set(id, text) { var el = document.getElementById(id); if (el) el.textContent = text; }
  function pct(value) { return (value * 100).toFixed(1) + "%"; }
  function time(iso) { return iso ? new Date(iso).toLocaleTimeString() : "—"; }

  function render(p) {
    status.textContent = p.status;
    var badge = document.querySelector(".heading .badge");
    if (badge) { badge.textContent = p.status; badge.className = "badge badge-" + p.status; }
    document.getElementById("pending").hidden = finished.indexOf(p.status) !== -1;
    document.getElementById("outcome").hidden = p.status !== "succeeded";
    document.getElementById("failure").hidden = p.status !== "failed";
    set("timings", time(p.queued_at) + " / " + time(p.started_at) + " / " + time(p.finished_at));
    if (p.status === "succeeded") {
      var label = document.getElementById("label");
      label.textContent = p.label;
      label.className = "label-" + p.label.toLowerCase();
      set("confidence", pct(p.confidence));
      document.getElementById("confidence-bar").style.width = (p.confidence * 100).toFixed(0) + "%";
      set("probability", p.probability.toFixed(4));
      set("threshold", p.threshold.toFixed(4));
      set("model", p.model.name + "@" + p.model.weights_sha256.slice(0, 12));
    }
    if (p.status === "failed") set("error", p.error);
    var untrained = document.getElementById("untrained-warning");
    if (untrained) untrained.hidden = !(p.status === "succeeded" && (p.model.name || "").indexOf("untrained") !== -1);
  }

  var delay = 1000;
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (p) {
        render(p);
        if (finished.indexOf(p.status) === -1) setTimeout(poll, delay);
      })
      .catch(function () { delay = Math.min(delay * 2, 10000); setTimeout(poll, delay); });
  }
  setTimeout(poll, delay);
})();
