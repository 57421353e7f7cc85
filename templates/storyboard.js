/* Storyboard behaviour, all optional: without JavaScript images open as plain links and the
   inspector sections open by clicking their summaries. No network, no libraries. */
(function () {
  "use strict";

  // Lightbox: show a clicked image full size in a modal <dialog> (Escape or a click closes it).
  var box = document.querySelector("dialog.lightbox");
  var figure = box && box.querySelector("figure");
  var caption = box && box.querySelector("figcaption");
  var big = null;

  function show(link) {
    var img = link.querySelector("img");
    if (!box || !img || typeof box.showModal !== "function") return false;
    if (!big) {
      big = document.createElement("img");
      figure.insertBefore(big, caption);
    }
    big.src = img.getAttribute("data-full") || img.currentSrc || img.src;  // the print pass's large panel, if any
    big.alt = img.alt;
    caption.textContent = img.alt;
    box.showModal();
    return true;
  }

  document.addEventListener("click", function (ev) {
    var link = ev.target.closest ? ev.target.closest("a.zoom") : null;
    if (!link || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
    if (show(link)) ev.preventDefault();
  });
  document.addEventListener("keydown", function (ev) {
    var link = ev.target.closest ? ev.target.closest("a.zoom[role=button]") : null;
    if (link && (ev.key === "Enter" || ev.key === " ")) {
      if (show(link)) ev.preventDefault();
    }
  });
  if (box) {
    box.addEventListener("click", function (ev) {
      if (ev.target === box || ev.target === big) box.close();
    });
  }

  // Open the inspector section a link points to (the "how it was made" links, or a shared URL).
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === "DETAILS") el.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();

  // Open all / close all.
  document.querySelectorAll("button[data-details]").forEach(function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("data-details") === "open";
      document.querySelectorAll("details.panel-inspector").forEach(function (d) { d.open = open; });
    });
  });

  // Copy buttons (the commands that pick a candidate). Shown only where this script runs; the
  // command stays on the page as text either way. The clipboard API needs a secure context, so a
  // page opened from disk in some browsers falls back to a hidden textarea and execCommand.
  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = button.getAttribute("data-copy");
      function done(ok) {
        button.textContent = ok ? "Copied" : "Press Ctrl+C";
        if (!ok && button.previousElementSibling) selectText(button.previousElementSibling);
        setTimeout(function () { button.textContent = "Copy"; }, 1600);
      }
      function fallback() {
        var area = document.createElement("textarea");
        area.value = text;
        area.setAttribute("readonly", "");
        area.style.position = "fixed";
        area.style.top = "0";
        area.style.opacity = "0";
        document.body.appendChild(area);
        area.select();
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        document.body.removeChild(area);
        done(ok);
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
      } else {
        fallback();
      }
    });
  });
})();
