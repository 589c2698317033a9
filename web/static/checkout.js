// The checkout page's live parts (the page works without them: reload shows the same state).
// 1. The countdown ticks down from the server's remaining seconds; at zero the page reloads (the server then
//    shows "expired"). 2. While a payment is live, its status comes by server-sent events, or every 2 s by
//    polling when EventSource is missing or fails; paid → the page says so in the live region without a
//    reload, then goes to the result page; the payment ended or the session expired → reload (new QR / expired).
// 3. The result page takes the payer back to the shop after a few seconds (the link is there to click).
// 5. Inside the WeChat / Alipay app, a live JSAPI payment (`#bridge`) is paid by the app's bridge with the
//    parameters the cashier signed: WeixinJSBridge.invoke("getBrandWCPayRequest") / AlipayJSBridge.call("tradePay"),
//    at once (or when the app says its bridge is ready) and again from the button; the outcome comes by the live
//    status as for a QR, the bridge's own answer only says when the payer cancelled or the app refused.
// 4. Framed by juhe.js on a merchant's page (`#juhe-embed`, rendered only for an origin the merchant registered):
//    the result and expired pages tell that one origin (never "*") by postMessage, and nothing leaves the frame.
(function () {
  "use strict";
  var en = document.documentElement.lang === "en";
  var texts = en
    ? { paid: "Payment successful. Taking you back…", unpaid: "The payment was not completed in the app. You can try again." }
    : { paid: "支付成功，正在返回商户…", unpaid: "未在应用内完成支付，可以再试一次。" };
  var embed = document.getElementById("juhe-embed");
  if (embed && window.parent !== window) {
    var message = { source: "juhe", type: embed.getAttribute("data-event") };
    if (embed.getAttribute("data-return-url")) { message.return_url = embed.getAttribute("data-return-url"); }
    window.parent.postMessage(message, embed.getAttribute("data-parent-origin"));
  }
  var status = document.getElementById("status");
  function say(text, kind) { if (status) { status.innerHTML = ""; var p = document.createElement("p"); p.className = kind || "ok"; p.textContent = text; status.appendChild(p); } }
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

  var bridge = document.getElementById("bridge");
  if (bridge) {
    var app = bridge.getAttribute("data-app");
    var params = JSON.parse(bridge.getAttribute("data-params") || "{}");
    var unpaid = function () { say(texts.unpaid, "err"); };
    var invoke = function () {
      if (app === "wechat" && window.WeixinJSBridge) {
        window.WeixinJSBridge.invoke("getBrandWCPayRequest", params, function (res) {
          if (!res || res.err_msg !== "get_brand_wcpay_request:ok") { unpaid(); }
        });
        return true;
      }
      if (app === "alipay" && window.AlipayJSBridge) {
        window.AlipayJSBridge.call("tradePay", params, function (res) {
          if (!res || String(res.resultCode) !== "9000") { unpaid(); }
        });
        return true;
      }
      return false;
    };
    var again = document.getElementById("bridge-pay");
    if (again) { again.addEventListener("click", function () { if (!invoke()) { unpaid(); } }); }
    if (!invoke()) {
      document.addEventListener(app === "wechat" ? "WeixinJSBridgeReady" : "AlipayJSBridgeReady", invoke, { once: true });
    }
  }

  var back = document.getElementById("return-link");
  if (back && back.hasAttribute("data-auto")) {
    window.setTimeout(function () { window.location.assign(back.href); }, 1000 * parseInt(back.getAttribute("data-auto"), 10));
  }
})();
