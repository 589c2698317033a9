// The checkout page's live parts (the page works without them: reload shows the same state).
// 1. The countdown ticks down from the server's remaining seconds; at zero the page reloads (the server then
//    shows "expired"). 2. While a payment is live, its status comes by server-sent events, or every 2 s by
//    polling when EventSource is missing or fails; paid → the page says so in the live region without a
//    reload, then goes to the result page; the payment ended or the session expired → reload (new QR / expired).
// 3. The result page takes the payer back to the shop after a few seconds (the link is there to click).
// 4. Framed by juhe.js on a merchant's page (`#juhe-embed`, rendered only for an origin the merchant registered):
//    the result and expired pages tell that one origin (never "*") by postMessage, and nothing leaves the frame.
(function () {
  "use strict";
  var en = document.documentElement.lang === "en";
  var texts = en
    ? { paid: "Payment successful. Taking you back…" }
    : { paid: "支付成功，正在返回商户…" };
  var embed = document.getElementById("juhe-embed");
  if (embed && window.parent !== window) {
    var message = { source: "juhe", type: embed.getAttribute("data-event") };
    if (embed.getAttribute("data-return-url")) { message.return_url = embed.getAttribute("data-return-url"); }
    window.parent.postMessage(message, embed.getAttribute("data-parent-origin"));
  }
  var status = document.getElementById("status");
  function say(text) { if (status) { status.innerHTML = ""; var p = document.createElement("p"); p.className = "ok"; p.textContent = text; status.appendChild(p); } }
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  var countdown = document.getElementById("countdown");
  if (countdown) {
    var end = Date.now() + (parseInt(countdown.getAttribute("data-remaining"), 10) || 0) * 1000 + 1000;
    var timer = window.setInterval(tick, 1000);
    function tick() {
      var left = Math.max(0, Math.floor((end - Date.now()) / 1000));
      countdown.textContent = pad(Math.floor(left / 60)) + ":" + pad(left % 60);
      if (left === 0) { window.clearInterval(timer); window.location.reload(); }
    }
  }

  var live = document.getElementById("live");
  var token = live && live.getAttribute("data-token");
  if (token) {
    var base = "/checkout/" + token;
    var done = false;
    var polling = null;
    var handle = function (s) {
      if (done) { return true; }
      if (s.status === "completed") {
        done = true;
        if (live.querySelector(".qr")) { live.querySelector(".qr").hidden = true; }
        say(texts.paid);
        window.setTimeout(function () { window.location.assign(base + "/result" + window.location.search); }, 1500);
        return true;
      }
      if (s.status !== "open" || (s.payment === "failed" || s.payment === "closed")) {
        done = true;
        window.location.assign(base + window.location.search);
        return true;
      }
      return false;
    };
    var poll = function () {
      if (polling) { return; }
      polling = window.setInterval(function () {
        fetch(base + "/status", { cache: "no-store", credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (s) { if (handle(s)) { window.clearInterval(polling); } })
          .catch(function () {});
      }, 2000);
    };
    if (window.EventSource) {
      var source = new EventSource(base + "/events");
      source.addEventListener("status", function (e) { if (handle(JSON.parse(e.data))) { source.close(); } });
      source.onerror = function () { source.close(); if (!done) { poll(); } };
    } else {
      poll();
    }
  }

  var back = document.getElementById("return-link");
  if (back && back.hasAttribute("data-auto")) {
    window.setTimeout(function () { window.location.assign(back.href); }, 1000 * parseInt(back.getAttribute("data-auto"), 10));
  }
})();
