// The batch upload page: while studies are being assessed, ask the API for each one every two seconds and
// reload the page (which groups them, with their reasons) as soon as one has finished. Gives up after ten
// minutes without a change, saying so; an error is retried.
(function () {
  var section = document.getElementById("upload-running");
  if (!section) return;
  var urls = (section.getAttribute("data-poll-urls") || "").split(" ").filter(Boolean);
  var finished = ["succeeded", "rejected", "failed", "cancelled"];
  var started = Date.now();
  function check() {
    if (Date.now() - started > 10 * 60 * 1000) {
      var note = document.createElement("p");
      note.className = "warning";
      note.textContent = "Still running after ten minutes: reload the page later, or open each study.";
      section.appendChild(note);
      return;
    }
    Promise.all(urls.map(function (url) {
      // Marked as background: polling is not activity and does not hold off the idle sign-out (accounts/idle.py).
      return fetch(url, { headers: { Accept: "application/json", "X-Background-Request": "1" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .catch(function () { return null; });
    })).then(function (bodies) {
      var done = bodies.some(function (body) { return body && finished.indexOf(body.status) !== -1; });
      if (done) window.location.reload();
      else window.setTimeout(check, 2000);
    });
  }
  window.setTimeout(check, 2000);
})();
