// Rows of results tables whose job is queued or running update themselves (no reload): each polls
// the prediction API (the session authenticates it) until its job is finished, then stops.
(function () {
  var finished = ["succeeded", "rejected", "failed", "cancelled"];
  function pct(value) { return typeof value === "number" ? (value * 100).toFixed(1) + "%" : "—"; }

  function render(row, p) {
    var status = row.querySelector("[data-live=status] .badge");
    if (status) { status.textContent = p.status; status.className = "badge badge-" + p.status; }
    var label = row.querySelector("[data-live=label]");
    if (label && p.status === "succeeded") {
      label.textContent = "";
      var strong = document.createElement("strong");
      strong.className = "label-" + String(p.label).toLowerCase();
      strong.textContent = p.label;
      label.appendChild(strong);
      if (p.borderline) {
        var flag = document.createElement("span");
        flag.className = "flag borderline";
        flag.textContent = "borderline — review";
        label.appendChild(document.createTextNode(" "));
        label.appendChild(flag);
      }
    } else if (label && p.status === "rejected") {
      label.textContent = "not a validated chest X-ray";
    }
    var probability = row.querySelector("[data-live=probability]");
    if (probability && p.status === "succeeded") probability.textContent = pct(p.probability);
  }

  function follow(row, delay) {
    var url = row.getAttribute("data-live-url");
    // Marked as background: polling is not activity, and does not hold off the idle sign-out (accounts/idle.py).
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json", "X-Background-Request": "1" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (p) {
        render(row, p);
        if (finished.indexOf(p.status) === -1) setTimeout(function () { follow(row, Math.min(delay * 1.5, 15000)); }, delay);
        else row.removeAttribute("data-live-url");
      })
      .catch(function () { setTimeout(function () { follow(row, Math.min(delay * 2, 30000)); }, delay * 2); });
  }

  var rows = document.querySelectorAll("tr[data-live-url]");
  for (var i = 0; i < rows.length; i++) follow(rows[i], 2000);

  // The worklist: studies uploaded since the page was opened (by this clinician elsewhere, a colleague, the
  // PACS) are offered, not pushed in: "2 new studies — show them" reloads when the reader chooses.
  var notice = document.getElementById("new-studies");
  function newStudies() {
    fetch(notice.getAttribute("data-url"), {
      credentials: "same-origin", headers: { Accept: "application/json", "X-Background-Request": "1" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (page) {
        if (page.count > 0) {
          document.getElementById("new-studies-link").textContent =
            page.count + " new stud" + (page.count === 1 ? "y" : "ies") + " since you opened this page — show them";
          notice.hidden = false;
        }
        setTimeout(newStudies, 15000);
      })
      .catch(function () { setTimeout(newStudies, 30000); });
  }
  if (notice) setTimeout(newStudies, 5000);
})();
