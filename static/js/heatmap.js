// Heatmap overlay on the result page: show/hide, opacity, and which branch's map.
// window.pneumowebShowHeatmap() is called by prediction-poll.js when a result arrives.
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
  window.pneumowebShowHeatmap = function () {
    map.src = source();
    controls.hidden = false;
    apply();
  };
  if (!controls.hidden) apply();
})();
