// A "Copy" button for a secret shown once (the passphrase of a portal-made key): copies the text of
// the element named by data-copy-target. The button stays hidden without script; the text can
// always be selected by hand. A file, not inline script: the Content-Security-Policy allows
// scripts from this origin only.
(function () {
  "use strict";
  var buttons = document.querySelectorAll("button[data-copy-target]");

  function fallback(text) {
    // navigator.clipboard needs a secure context (HTTPS or localhost); elsewhere select and copy.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    area.remove();
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  buttons.forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    var state = document.getElementById("copy-state");
    if (!source) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = source.textContent.trim();
      var copy = navigator.clipboard && window.isSecureContext
        ? navigator.clipboard.writeText(text) : fallback(text);
      copy.then(function () {
        button.textContent = button.getAttribute("data-copied-label") || "Copied";
        if (state) { state.textContent = "The passphrase is on your clipboard. Paste it into your password manager."; }
      }, function () {
        if (state) { state.textContent = "Your browser did not allow copying: select the passphrase and copy it by hand."; }
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      });
    });
  });
})();
