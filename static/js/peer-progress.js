// Keeps the peer page's progress current without a reload: polls status.json until the
// request reaches a final state (issued, rejected, failed).
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box) { return; }
  var url = box.getAttribute("data-status-url");
  var FINAL = { issued: true, rejected: true, failed: true, revoked: true };
  var ORDER = ["making-key", "pending", "approved", "signing", "issued"];

  function paint(progress) {
    var at = ORDER.indexOf(progress);
    var items = box.querySelectorAll("li[data-step]");
    for (var i = 0; i < items.length; i++) {
      var idx = ORDER.indexOf(items[i].getAttribute("data-step"));
      items[i].className = idx < at ? "done" : (idx === at ? "current" : "");
      if (progress === "issued" && idx === at) { items[i].className = "done"; }
    }
  }

  function update(data) {
    var badge = document.getElementById("status-badge");
    badge.textContent = data.progress;
    badge.className = "status status-" + data.status;
    document.getElementById("next-step").textContent = data.next;
    var why = data.reason || data.failure;
    document.getElementById("failure").textContent = why ? "Reason: " + why : "";
    document.getElementById("download").hidden = data.status !== "issued";
    box.setAttribute("data-progress", data.progress);
    paint(data.progress);
  }

  // Replace the card with this id by the fresh page's (or add it after `after`, or remove it).
  function swapCard(fresh, id, after) {
    var current = document.getElementById(id);
    var next = fresh.getElementById(id);
    if (current && next) { current.innerHTML = next.innerHTML; current.className = next.className; return; }
    if (current) { current.remove(); return; }
    if (next && after) { after.insertAdjacentElement("afterend", document.importNode(next, true)); }
  }

  // Once the request is decided, bring the Details card (serial, expiry, who decided) up to
  // date from the page itself, add the Renew card an issued certificate gets, and drop the
  // now stale "registered" notice.
  function refreshDetails() {
    var notices = document.querySelectorAll("main > .banner.success");
    for (var i = 0; i < notices.length; i++) { notices[i].remove(); }
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        swapCard(fresh, "details", null);
        swapCard(fresh, "renew", document.getElementById("details"));
      })
      .catch(function () { /* the progress above is already right; details catch up on reload */ });
  }

  var delay = 1000;
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (data) {
        update(data);
        if (!FINAL[data.status]) { delay = Math.min(delay * 1.2, 5000); setTimeout(poll, delay); return; }
        refreshDetails();
      })
      .catch(function () { delay = Math.min(delay * 2, 15000); setTimeout(poll, delay); });
  }

  paint(box.getAttribute("data-progress"));
  if (!FINAL[box.getAttribute("data-progress")]) { setTimeout(poll, delay); }
})();
