// Heatmap overlay on the result page: show/hide, opacity, and which branch's map.
// window.pneumowebShowHeatmap(isEvidence, label) is called by prediction-poll.js when a result arrives.
// The map is shown at once only where it stands for evidence of pneumonia (a PNEUMONIA or borderline
// result: Prediction.shows_heatmap); a NORMAL result's map waits for "Show", captioned as evidence for NORMAL.
(function () {
  var map = document.getElementById("heatmap");
  var controls = document.getElementById("heatmap-controls");
  if (!map || !controls) return;
  var toggle = document.getElementById("heatmap-toggle");
  var opacity = document.getElementById("heatmap-opacity");
  var branch = document.getElementById("heatmap-branch");
  var base = map.getAttribute("data-base"); // .../heatmap/combined.png

  function source() { return base.replace(/combined\.png$/, branch.value + ".png"); }
  function apply() {
    map.style.opacity = String(opacity.value / 100);
    map.hidden = !toggle.checked;
  }
  toggle.addEventListener("change", apply);
  opacity.addEventListener("input", apply);
  branch.addEventListener("change", function () { map.src = source(); });
  var caption = document.getElementById("heatmap-caption");
  window.pneumowebShowHeatmap = function (isEvidence, label) {
    map.src = source();
    controls.hidden = false;
    toggle.checked = !!isEvidence;
    if (caption) caption.hidden = !!isEvidence || label !== "NORMAL";
    apply();
  };
  if (!controls.hidden) apply();
})();
