// "Bundles waiting to be made" on the gateway and site-profile pages: the number goes down by itself
// while the render workers catch up (after a profile change every bundle is made again). The page
// polls a small JSON answer (/bundles/gateway/status.json): every 3 s while bundles wait, every 20 s
// once none does, and not at all while the tab is hidden. A file, not inline script: the
// Content-Security-Policy allows scripts from this origin only.
(function () {
  "use strict";
  var box = document.querySelector("[data-stale-url]");
  if (!box) { return; }
  var url = box.getAttribute("data-stale-url");
  var timer = null;

  function show(stale) {
    document.querySelectorAll("[data-stale-count]").forEach(function (el) { el.textContent = String(stale); });
    document.querySelectorAll("[data-stale-note]").forEach(function (el) {
      el.textContent = stale > 0 ? "(the render workers are on it; this number updates by itself)" : "(every bundle is current)";
    });
  }

  function schedule(stale) {
    clearTimeout(timer);
    if (!document.hidden) { timer = setTimeout(poll, stale > 0 ? 3000 : 20000); }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(function (data) { show(data.stale); schedule(data.stale); })
      .catch(function () { schedule(1); });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { clearTimeout(timer); } else { poll(); }
  });
  var first = parseInt((document.querySelector("[data-stale-count]") || {}).textContent, 10);
  schedule(isNaN(first) ? 1 : first);
})();
