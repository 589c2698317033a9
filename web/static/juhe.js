/*! juhe.js — open Juhe's hosted checkout on a merchant's page (docs/checkout.md "Embedding").
 *
 *   <script src="https://pay.example.com/static/juhe.js" defer></script>
 *   Juhe.checkout({ url: session.url, onPaid: function (e) { ... }, onClosed: ..., onExpired: ... });
 *
 * Desktop: a modal dialog with the checkout in an iframe (focus kept inside, Esc or the close button closes it).
 * Phones: the page goes to the checkout itself (small screens and in-app browsers pay best full-page).
 * Results arrive by postMessage and are accepted only from Juhe's own origin (the origin this script was served
 * from) and only from the frame it opened; the checkout sends them only to an origin the merchant registered
 * (its CSP frame-ancestors list the same origins, so an unregistered page cannot frame it at all).
 * A `paid` event is a hint for the page: trust the webhook or GET /v1/checkout/sessions/{id} before shipping.
 * No dependencies, no globals but `Juhe`, no inline styles in markup (CSSOM only, so a strict CSP is fine).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var juheOrigin = script ? new URL(script.src, window.location.href).origin : window.location.origin;
  var MOBILE = /Mobi|Android|iPhone|iPad|HarmonyOS|MicroMessenger|AlipayClient/i;
  var open = null;

  function style(el, props) { for (var k in props) { el.style[k] = props[k]; } return el; }

  function checkout(options) {
    options = options || {};
    var url = new URL(options.url || (options.session && options.session.url) || "", window.location.href);
    if (url.origin !== juheOrigin || !/^\/checkout\/cst_[A-Za-z0-9_-]+$/.test(url.pathname)) {
      throw new Error("Juhe.checkout: url must be a checkout session url of " + juheOrigin);
    }
    if (MOBILE.test(navigator.userAgent) && !options.modalOnMobile) { window.location.assign(url.href); return null; }
    if (open) { open.close("replaced"); }
    url.searchParams.set("embed", window.location.origin);
    if (options.locale) { url.searchParams.set("lang", options.locale); }

    var before = document.activeElement;
    var backdrop = style(document.createElement("div"), {
      position: "fixed", inset: "0", background: "rgba(0,0,0,0.55)", zIndex: "2147483000",
      display: "flex", alignItems: "center", justifyContent: "center"
    });
    var dialog = style(document.createElement("div"), {  // the close button sits above it, clear of the page
      position: "relative", width: "min(440px, 96vw)", height: "min(680px, calc(92vh - 48px))", marginTop: "48px"
    });
    dialog.setAttribute("role", "dialog");
    dialog.setAttribute("aria-modal", "true");
    dialog.setAttribute("aria-label", options.title || "Checkout · 收银台");
    var close = style(document.createElement("button"), {
      position: "absolute", top: "-46px", right: "0", width: "40px", height: "40px", border: "0",
      borderRadius: "20px", background: "#fff", color: "#111", fontSize: "22px", cursor: "pointer"
    });
    close.type = "button";
    close.textContent = "\u00d7";
    close.setAttribute("aria-label", options.closeLabel || "Close · 关闭");
    var frame = style(document.createElement("iframe"), {
      border: "0", width: "100%", height: "100%", background: "#fff", borderRadius: "12px",
      boxShadow: "0 10px 40px rgba(0,0,0,0.35)"
    });
    frame.title = options.title || "Checkout · 收银台";
    frame.src = url.href;
    frame.setAttribute("allow", "payment");
    dialog.appendChild(close);
    dialog.appendChild(frame);
    backdrop.appendChild(dialog);

    var state = { finished: false };
    function onMessage(event) {
      if (event.origin !== juheOrigin || event.source !== frame.contentWindow) { return; }
      var data = event.data || {};
      if (data.source !== "juhe") { return; }
      if (data.type === "paid") {
        state.finished = true;
        if (options.onPaid) { options.onPaid({ type: "paid", returnUrl: data.return_url || null }); }
        if (options.closeOnPaid !== false) { handle.close("paid"); }
      } else if (data.type === "expired") {
        state.finished = true;
        if (options.onExpired) { options.onExpired({ type: "expired" }); }
      }
    }
    function onKey(event) {
      if (event.key === "Escape") { handle.close("closed"); }
      if (event.key === "Tab") {  // keep focus in the dialog: the close button and the frame
        var inside = dialog.contains(document.activeElement);
        if (!inside) { event.preventDefault(); close.focus(); }
      }
    }
    var handle = {
      close: function (why) {
        if (open !== handle) { return; }
        open = null;
        window.removeEventListener("message", onMessage);
        document.removeEventListener("keydown", onKey, true);
        backdrop.remove();
        if (before && before.focus) { before.focus(); }
        if (why === "closed" && !state.finished && options.onClosed) { options.onClosed({ type: "closed" }); }
      }
    };
    close.addEventListener("click", function () { handle.close("closed"); });
    backdrop.addEventListener("click", function (event) { if (event.target === backdrop) { handle.close("closed"); } });
    window.addEventListener("message", onMessage);
    document.addEventListener("keydown", onKey, true);
    document.body.appendChild(backdrop);
    open = handle;
    frame.focus();
    return handle;
  }

  window.Juhe = { checkout: checkout, origin: juheOrigin };
})();
