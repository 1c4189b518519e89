// The approval queue's "select all" box, and click-to-select on read-only fields (one-time links).
// A file, not inline script: the Content-Security-Policy allows scripts from this origin only.
document.getElementById("select-all")?.addEventListener("change", function (e) {
  document.querySelectorAll('input[name="peer"]').forEach(function (box) { box.checked = e.target.checked; });
});
document.querySelectorAll("input[readonly][data-select-on-click]").forEach(function (field) {
  field.addEventListener("click", function () { field.select(); });
});
