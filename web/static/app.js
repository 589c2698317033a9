// Progressive enhancement only: every page works without this file (forms post, links navigate).
// 1. A form marked data-busy disables its button once submitted (no double submit) and says so in the
//    live region; 2. an outcome message (done / error) is focused on load so screen readers read it first.
(function () {
  "use strict";
  var status = document.getElementById("status");
  var busyText = document.documentElement.lang === "en" ? "Working…" : "处理中…";
  document.querySelectorAll("form[data-busy]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("button[type=submit]");
      if (button) {
        // Disabled after the submit event has been dispatched, so the form still sends.
        window.setTimeout(function () { button.disabled = true; }, 0);
      }
      if (status) { status.textContent = busyText; }
    });
  });
  if (status && status.textContent.trim()) {
    status.setAttribute("tabindex", "-1");
    status.focus();
  }
})();
