// Copy buttons: <button data-copy-target="ID"> copies the value (or text) of the element with that id,
// and says so in #copy-status. A file, not inline script: the Content-Security-Policy allows scripts
// from this origin only. The Clipboard API needs a secure context (https, or localhost); elsewhere
// the field is selected so that Ctrl-C (or a long press) copies it.
(function () {
  "use strict";

  function say(text) {
    var status = document.getElementById("copy-status");
    if (status) { status.textContent = text; }
  }

  function selectIn(field) {
    if (typeof field.select === "function") { field.focus(); field.select(); }
  }

  document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy-target"));
      if (!field) { return; }
      var text = field.value !== undefined ? field.value : field.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () {
          button.textContent = "Copied";
          say("The link is on the clipboard.");
        }, function () {
          selectIn(field);
          say("Copying was refused: the link is selected, press Ctrl-C.");
        });
      } else {
        selectIn(field);
        say("The link is selected: press Ctrl-C to copy it.");
      }
    });
  });
})();
