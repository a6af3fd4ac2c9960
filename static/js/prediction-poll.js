// Polls the prediction API while the job is queued or running and fills in the result
// in place (no reload). The page carries the API address in #result[data-api-url].
(function () {
  // The probability bar's width comes from a data attribute: the CSP allows no inline style.
  ["probability-bar", "threshold-bar"].forEach(function (id) {
    var bar = document.getElementById(id);
    if (bar && bar.getAttribute("data-width")) bar.style.width = bar.getAttribute("data-width");
  });
  var result = document.getElementById("result");
  if (!result) return;
  var url = result.getAttribute("data-api-url");
  var finished = ["succeeded", "rejected", "failed", "cancelled"];
  var status = document.getElementById("status");
  if (!url || !status || finished.indexOf(status.textContent.trim()) !== -1) return;

  function byId(id) { return document.getElementById(id); }
  function set(id, text) { var el = byId(id); if (el) el.textContent = text; }
  function show(id, visible) { var el = byId(id); if (el) el.hidden = !visible; }
  function pct(value) { return typeof value === "number" ? (value * 100).toFixed(1) + "%" : "—"; }
  function fillList(id, texts) {
    var list = byId(id);
    if (!list) return;
    list.textContent = "";
    (texts || []).forEach(function (text) {
      var item = document.createElement("li");
      item.textContent = text;
      list.appendChild(item);
    });
    list.hidden = !(texts || []).length;
  }
  // The API's ISO time in the server's time zone, written HH:MM:SS as the page renders it (one format,
  // one zone; the browser's locale would switch to "7:14:22 PM" and its own zone).
  function time(iso) { var m = /T(\d\d:\d\d:\d\d)/.exec(iso || ""); return m ? m[1] : "—"; }

  function render(p) {
    status.textContent = p.status;
    var badge = document.querySelector(".heading .badge");
    if (badge) { badge.textContent = p.status; badge.className = "badge badge-" + p.status; }
    show("pending", finished.indexOf(p.status) === -1);
    show("outcome", p.status === "succeeded");
    show("failure", p.status === "failed");
    show("rejected", p.status === "rejected");
    if (p.status === "rejected") {
      set("ood-reason", p.ood_reason || "");
      fillList("rejected-warnings", p.warnings);
    }
    show("cancelled", p.status === "cancelled");
    show("poll-error", false);
    set("timings", time(p.queued_at) + " / " + time(p.started_at) + " / " + time(p.finished_at));
    var model = p.model || {};
    if (p.status === "succeeded") {
      var label = byId("label");
      if (label) { label.textContent = p.label; label.className = "label-" + String(p.label).toLowerCase(); }
      set("probability-percent", pct(p.probability));
      show("borderline", !!p.borderline);
      var bar = byId("probability-bar");
      if (bar) bar.style.width = (typeof p.probability === "number" ? (p.probability * 100).toFixed(0) : "0") + "%";
      // One format for every probability on the page: a percentage with one decimal (the threshold too).
      set("threshold", pct(p.threshold));
      var mark = byId("threshold-bar");
      if (mark) mark.style.width = typeof p.threshold === "number" ? (p.threshold * 100).toFixed(1) + "%" : "0%";
      set("population", p.population || "");
      set("model", (model.name || "") + "@" + (model.weights_sha256 || "").slice(0, 12));
      fillList("warnings", p.warnings);
      var sub = p.subtype;
      show("subtype", !!sub);
      if (sub) {
        var v = sub.validation || {};
        set("subtype-label", sub.label);
        set("subtype-probability", pct(sub.probability));
        set("subtype-auc", typeof v.auc === "number"
          ? v.auc.toFixed(3) + (v.ci95 ? " [" + v.ci95[0].toFixed(3) + ", " + v.ci95[1].toFixed(3) + "]" : "") : "—");
      }
      if (p.heatmap && window.pneumowebShowHeatmap) window.pneumowebShowHeatmap(p.heatmap_is_evidence, p.label);
    }
    if (p.status === "failed") set("error", p.error || "");
    show("report-links", p.status === "succeeded" || p.status === "rejected");
    show("untrained-warning", (model.name || "").indexOf("untrained") !== -1);
  }

  function giveUp(message) {
    set("poll-error", message);
    show("poll-error", true);
  }

  var delay = 1000;
  function poll() {
    // Marked as background: polling is not activity, and does not hold off the idle sign-out (accounts/idle.py).
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json", "X-Background-Request": "1" } })
      .then(function (r) {
        if (r.status === 401 || r.status === 403 || r.status === 404) {
          giveUp("This page can no longer be updated (HTTP " + r.status + "); reload it, logging in again if asked.");
          return null;
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (p) {
        if (!p) return;
        delay = 1000;
        render(p);
        if (finished.indexOf(p.status) === -1) setTimeout(poll, delay);
      })
      .catch(function () {
        // Network hiccup or server error: keep trying, more slowly.
        delay = Math.min(delay * 2, 10000);
        setTimeout(poll, delay);
      });
  }
  setTimeout(poll, delay);
})();
