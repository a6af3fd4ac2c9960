// Shows the chosen X-ray before the form is submitted.
(function () {
  var input = document.getElementById("id_image");
  var preview = document.getElementById("preview");
  var empty = document.getElementById("preview-empty");
  if (!input || !preview) return;
  var lastUrl = null;
  input.addEventListener("change", function () {
    if (lastUrl) URL.revokeObjectURL(lastUrl);
    var file = input.files && input.files[0];
    if (!file) { preview.hidden = true; if (empty) empty.hidden = false; return; }
    lastUrl = URL.createObjectURL(file);
    preview.src = lastUrl;
    preview.hidden = false;
    if (empty) empty.hidden = true;
  });
})();
